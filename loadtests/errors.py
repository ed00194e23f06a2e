"""What a user of the load side can get wrong. Every class here is a ``ServelabError``
(``targets.errors``), the one root the CLI boundary (``loadtests.cli.app.dispatch``) turns into
one line on stderr and exit code 2; anything else that escapes is a bug and keeps its traceback::

    ServelabError (targets.errors)
    ├── SpecError, RequestError, Overloaded, ModelFailure     (targets.errors)
    ├── TargetStartError   a target servelab started did not come up      (targets.errors)
    ├── UsageError         a command-line mistake argparse found
    ├── LoadOptionError    options that cannot make a run: a target and an option that do not
    │   │                  go together, a load plan, a payload spec, a gate expression
    │   └── TargetUnusable     the target refused the probe, or is off loopback
    ├── ConfigError        a config, trace or template file that is missing or malformed
    └── ResultFileError    a result file or event log that cannot be read, parsed or written,
                           or an output path (``--out``) that cannot be written

``LoadOptionError``, ``ConfigError`` and ``ResultFileError`` are also ``ValueError`` so callers
of the Python API that caught ``ValueError`` before keep working.
"""

from __future__ import annotations

from targets.errors import ServelabError, TargetStartError

__all__ = [
    "ConfigError",
    "LoadOptionError",
    "ResultFileError",
    "ServelabError",
    "TargetStartError",
    "UsageError",
]


class UsageError(ServelabError):
    """A command-line mistake; printed as one line, exit 2."""


class LoadOptionError(ServelabError, ValueError):
    """Options that cannot describe a run (the message names the option)."""


class ConfigError(ServelabError, ValueError):
    """A config, trace or template file that is missing, unreadable or malformed."""


class ResultFileError(ServelabError, ValueError):
    """A result file or event log that cannot be read or parsed, or an output path that
    cannot be written; the message names the path."""
