"""The ``servelab`` command line: ``app`` wires the command modules, one per command."""
