"""The module a function platform loads: ``targets.function.entry.handler`` is the handler
setting (AWS Lambda: ``targets.function.entry.handler``). Importing it *is* the init phase: the
model named by ``SERVELAB_MODEL`` (default ``reference``) loads here, once per instance.

The one module under ``targets`` with an import-time side effect, on purpose; nothing imports
it but a platform and ``targets.function.instance``.
"""

from __future__ import annotations

import os

from targets.function.handler import LOG_LEVEL_ENV, MODEL_ENV, make_handler
from targets.spec import DEFAULT_MODEL_SPEC

handler = make_handler(
    os.environ.get(MODEL_ENV, DEFAULT_MODEL_SPEC),
    log_level=os.environ.get(LOG_LEVEL_ENV, "warning"),
)
