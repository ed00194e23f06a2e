"""``python -m loadtests.cli``: the ``servelab`` command (how servelab starts its own targets)."""

import sys

from loadtests.cli.app import main

sys.exit(main())
