"""gRPC's error boundary: ``translate`` turns an exception into the status a client is told.

A client's mistake gets the code ``targets.errors`` names for it; overload is UNAVAILABLE with
``grpc-retry-pushback-ms`` (the trailing metadata grpc's own retry policy honours); a model failure
or anything unexpected is INTERNAL (never UNKNOWN, never a client code). Every failure carries the
canonical error code, and the field at fault when there is one, as trailing metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, NoReturn

import grpc

from targets.errors import (
    ApiVersionDisabled,
    InvalidRequest,
    MalformedRequest,
    ModelVersionMismatch,
    Overloaded,
    RequestError,
    RequestTooLarge,
    UnsupportedMediaType,
)
from targets.rpc import convert

ERROR_CODE_KEY: Final = "servelab-error-code"  # trailing metadata: the canonical error code
ERROR_FIELD_KEY: Final = "servelab-error-field"
RETRY_PUSHBACK_KEY: Final = "grpc-retry-pushback-ms"  # honoured by grpc's retry policy (gRFC A6)

_STATUS_BY_ERROR: Final[dict[type[RequestError], grpc.StatusCode]] = {
    MalformedRequest: grpc.StatusCode.INVALID_ARGUMENT,
    UnsupportedMediaType: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    RequestTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ApiVersionDisabled: grpc.StatusCode.UNIMPLEMENTED,
    ModelVersionMismatch: grpc.StatusCode.FAILED_PRECONDITION,
}


@dataclass(frozen=True, slots=True)
class Failure:
    """What a client is told about an error: status, canonical code, message, field."""

    status: grpc.StatusCode
    code: str
    message: str
    field: str | None = None
    retry_after_ms: int | None = None

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        pairs: tuple[tuple[str, str], ...] = ((ERROR_CODE_KEY, self.code),)
        if self.field is not None:
            # A field path can quote the client's own key (options.<key>); metadata values must
            # be printable ASCII or the whole status fails to send, so escape everything else.
            pairs += ((ERROR_FIELD_KEY, self.field.encode("unicode_escape").decode("ascii")),)
        if self.retry_after_ms is not None:
            pairs += ((RETRY_PUSHBACK_KEY, str(self.retry_after_ms)),)
        return pairs


def translate(exc: Exception) -> Failure:
    """The one place an exception becomes a gRPC status; see the module docstring."""
    if isinstance(exc, RequestError):
        status = next(
            (_STATUS_BY_ERROR[kind] for kind in type(exc).__mro__ if kind in _STATUS_BY_ERROR),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        return Failure(status, exc.code, exc.message, exc.field)
    if isinstance(exc, Overloaded):  # not RESOURCE_EXHAUSTED: that one means an oversize message
        return Failure(
            grpc.StatusCode.UNAVAILABLE,
            exc.code,
            exc.message,
            retry_after_ms=exc.retry_after_s * 1000,
        )
    # ModelFailure's message names the model and the exception type, not the exception's text
    # (which could leak internals); anything else is a server bug and says no more than that.
    code = convert.error_code(exc)
    message = (
        str(exc) if code != convert.INTERNAL_ERROR_CODE else f"internal error: {type(exc).__name__}"
    )
    return Failure(grpc.StatusCode.INTERNAL, code, message)


async def abort(context: Any, failure: Failure) -> NoReturn:
    """End the call with ``failure``'s status, message and trailing metadata."""
    await context.abort(failure.status, failure.message, failure.trailing_metadata())
    raise RuntimeError("grpc context.abort() returned")  # abort always raises
