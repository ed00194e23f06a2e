"""servelab's REST app as an AWS-Lambda-style ``handler(event, context)``, through ``mangum``.

The app is the REST target's own (``targets.rest.app.create_app``): the same routes, schema and
error answers, reached through an API Gateway v2 / function URL event instead of a socket. What
a platform's init phase does happens in ``make_handler``: the imports, the model load and the
app's lifespan startup, once per instance. Mangum's default would run the lifespan around every
invocation; here it runs once, as a long-lived server's does, and the instance never shuts it
down (a platform freezes or kills an environment without notice).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from targets.spec import DEFAULT_MODEL_SPEC

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
FUNCTION_NAME: Final = "servelab-predict"
# What an instance's environment names (``targets.function.entry`` reads them, the front sets them)
MODEL_ENV: Final = "SERVELAB_MODEL"
LOG_LEVEL_ENV: Final = "SERVELAB_LOG_LEVEL"


@dataclass(slots=True)
class LambdaContext:
    """The context object a Lambda handler receives (the fields Mangum and apps read)."""

    aws_request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    deadline_ms: int = 0  # epoch ms; 0: no deadline
    function_name: str = FUNCTION_NAME
    function_version: str = "$LATEST"
    invoked_function_arn: str = f"arn:aws:lambda:local:000000000000:function:{FUNCTION_NAME}"
    memory_limit_in_mb: int = 0  # unknown: the emulation sets no memory limit
    log_group_name: str = f"/aws/lambda/{FUNCTION_NAME}"
    log_stream_name: str = "local"
    identity: None = None
    client_context: None = None

    def get_remaining_time_in_millis(self) -> int:
        if not self.deadline_ms:
            return 0
        return max(self.deadline_ms - int(time.time() * 1000), 0)


def make_handler(model_spec: str = DEFAULT_MODEL_SPEC, *, log_level: str = "warning") -> Handler:
    """The init phase: load ``model_spec``, build the REST app, start its lifespan, and return
    the handler. A bad SPEC raises here (``SpecError``), before any event is taken."""
    from mangum import Mangum
    from mangum.protocols import LifespanCycle

    from targets.logs import JsonLogger
    from targets.rest.app import create_app
    from targets.rest.server import encode_log_record
    from targets.service import PredictionService
    from targets.spec import load_model

    service = PredictionService(load_model(model_spec), transport="function")
    logger = JsonLogger(sys.stderr, log_level, encode=encode_log_record)
    app = create_app(service, logger=logger)
    adapter = Mangum(app, lifespan="off")
    LifespanCycle(app, "on").__enter__()  # startup once; the loop keeps it open for later events
    return adapter
