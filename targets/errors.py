"""Errors raised by the serving targets.

Each transport translates these at its own boundary, and only there::

    ServelabError
    ├── SpecError              bad --model SPEC (CLI: exit 2, one line)
    ├── InputError             a file or option value a command cannot use (CLI: exit 2, one line)
    ├── AddressUnavailable     a server cannot listen on --host/--port (CLI: exit 2, one line)
    ├── RequestError           the client's mistake            REST   gRPC
    │   ├── MalformedRequest       body is not JSON / not decodable 400    INVALID_ARGUMENT
    │   ├── UnsupportedMediaType   not application/json             415    -
    │   ├── RequestTooLarge        body or message over the limit   413    RESOURCE_EXHAUSTED
    │   ├── InvalidRequest         violates the canonical schema    422    INVALID_ARGUMENT
    │   ├── ApiVersionDisabled     v2 asked of a v1-only server     404    UNIMPLEMENTED
    │   └── ModelVersionMismatch   asked for a version not served   409    FAILED_PRECONDITION
    ├── Overloaded             past the in-flight + queue bound   503    UNAVAILABLE
    ├── ModelFailure           the model raised: a server fault   500    INTERNAL
    └── TargetStartError       a target servelab started did not come up (CLI: one line,
                               exit 2: nothing was measured)

What the user can cause is a ``ServelabError``; the servelab CLI (``loadtests.cli.app``) and an
edge bundle (``targets.edge.runtime.run_bundled``) print exactly those as one line. Anything else
that escapes a command — a full disk, a bug — keeps its traceback. ``SpecError`` and
``InputError`` are also ``ValueError``s and ``AddressUnavailable`` is also an ``OSError``, so
callers of the Python API that caught those keep working.

``Overloaded`` is neither the client's mistake nor a fault: the request was fine and may succeed
if sent again later (REST adds ``Retry-After``). It is kept apart from RESOURCE_EXHAUSTED, which
gRPC already answers for an oversize message.
"""

from __future__ import annotations


class ServelabError(Exception):
    """Base of every error servelab raises on purpose."""


class SpecError(ServelabError, ValueError):
    """A model SPEC (``--model``) that cannot be understood or loaded."""


class InputError(ServelabError, ValueError):
    """A file or option value a command cannot use; the message names it and says why.

    An INPUT that is missing, unreadable or of an unsupported type, an output path (``--out``,
    ``--errors``, ``--ready-file``) that cannot be created or written, an option value out of
    range or in conflict with another."""


class AddressUnavailable(ServelabError, OSError):
    """A serving target cannot listen on the address it was given: the port is taken, or the
    host is not one of this machine's."""


class RequestError(ServelabError):
    """A request the client got wrong; never a server fault."""

    code = "invalid_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_body(self) -> dict[str, object]:
        """The ``{"error": {...}}`` body every transport answers with."""
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


class MalformedRequest(RequestError):
    code = "malformed_request"


class UnsupportedMediaType(RequestError):
    code = "unsupported_media_type"


class RequestTooLarge(RequestError):
    code = "payload_too_large"


class InvalidRequest(RequestError):
    code = "invalid_request"


class ApiVersionDisabled(RequestError):
    code = "api_version_disabled"


class ModelVersionMismatch(RequestError):
    code = "model_version_mismatch"


class Overloaded(ServelabError):
    """The target is at its in-flight and queue bound and sheds this request (503 / UNAVAILABLE).

    Shedding at a fixed bound keeps memory and queueing delay flat under any offered load;
    ``retry_after_s`` tells a well-behaved client when to come back.
    """

    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    def to_body(self) -> dict[str, object]:
        """The canonical ``{"error": {...}}`` body, as ``RequestError.to_body`` gives it."""
        return {"error": {"code": self.code, "message": self.message}}


class ModelFailure(ServelabError):
    """The model raised while predicting: a server fault, reported as 500 / INTERNAL."""

    code = "model_error"


class TargetStartError(ServelabError, RuntimeError):
    """A target servelab started itself (``loadtests.jobs.launch``) did not come up.

    ``exit_code`` is the target's own (None: it never answered ready), ``detail`` the last line
    it logged — its own one-line account of what was wrong."""

    def __init__(self, kind: str, detail: str, exit_code: int | None = None) -> None:
        self.kind = kind
        self.detail = detail
        self.exit_code = exit_code
        if exit_code is None:
            message = f"{kind} target: {detail}"
        elif self.refused_arguments:
            message = f"{kind} target refused its arguments: {detail}"
        else:
            message = f"{kind} target exited with {exit_code}: {detail}"
        super().__init__(message)

    @property
    def refused_arguments(self) -> bool:
        """The target exited as every servelab command does on a bad option or SPEC (exit 2)."""
        return self.exit_code == 2
