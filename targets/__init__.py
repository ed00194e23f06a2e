"""servelab serving targets: one model behind REST, gRPC, batch, streaming and edge.

Importing this package is cheap and has no side effects: it pulls in the stdlib-only core
(schema, models, SPECs); transports are imported from their own modules.
"""

from targets.errors import (
    ModelFailure,
    RequestError,
    ServelabError,
    SpecError,
)
from targets.models import Model, ReferenceModel, SyntheticModel, reference_prediction
from targets.schema import (
    Limits,
    PredictRequest,
    build_response,
    response_problem,
    validate_request,
)
from targets.service import PredictionService
from targets.spec import load_model

__all__ = [
    "Limits",
    "Model",
    "ModelFailure",
    "PredictRequest",
    "PredictionService",
    "ReferenceModel",
    "RequestError",
    "ServelabError",
    "SpecError",
    "SyntheticModel",
    "build_response",
    "load_model",
    "reference_prediction",
    "response_problem",
    "validate_request",
]
