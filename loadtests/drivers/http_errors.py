"""The one translation of an HTTP client's transport failure into an error class, for every HTTP
client servelab drives: the fast HTTP/1.1 client (``http1.py``), aiohttp (``rest.py``) and
Locust's geventhttpclient (``RestUser``). An answer with a status is ``judge_http``'s; this is
for a request that got none::

    timeout        the answer (or a connection, or a pooled one) did not come in time
    connect        the connection was refused, or the host could not be reached
    disconnected   the server closed the connection before the answer (or a pipe broke)
    reset          the peer reset the connection
    protocol       the answer was not HTTP (the fast client's parser; ``ConnectionFailed``)
    io_<Type>      anything else the transport raised, by exception type

geventhttpclient reports a reset before the first byte of an answer as ``HTTPConnectionClosed``,
so under Locust both are ``disconnected``; the asyncio clients tell a reset apart. Foreign
exception classes are recognised by name, so this module imports none of the clients
(gevent must stay inside the Locust entry file).
"""

from __future__ import annotations

import errno
from typing import Final

TIMEOUT: Final = "timeout"
CONNECT: Final = "connect"
DISCONNECTED: Final = "disconnected"
RESET: Final = "reset"
PROTOCOL: Final = "protocol"

_REFUSED_ERRNOS: Final = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH})
_TIMEOUT_NAMES: Final = frozenset({"Timeout"})  # gevent.Timeout is no TimeoutError
_CONNECT_NAMES: Final = frozenset({"ClientConnectorError"})  # aiohttp: connecting failed
_DISCONNECTED_NAMES: Final = frozenset(
    {"ServerDisconnectedError", "HTTPConnectionClosed"}  # aiohttp, geventhttpclient
)


def _named(exc: BaseException, names: frozenset[str]) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def is_reset(exc: BaseException | None) -> bool:
    """The peer reset the connection (directly, or as the cause of a client's own error)."""
    if exc is None:
        return False
    return (
        isinstance(exc, ConnectionResetError)
        or getattr(exc, "errno", None) == errno.ECONNRESET
        or isinstance(exc.__cause__, ConnectionResetError)
    )


def http_error_class(exc: BaseException) -> str:
    """The error class of a request that raised ``exc`` instead of answering (see the module
    docstring). geventhttpclient wraps the cause in ``RetriesExceeded(original=...)``: it is
    unwrapped first. A client's disconnect is ``disconnected`` whatever caused it."""
    original = getattr(exc, "original", None)
    if isinstance(original, BaseException):
        exc = original
    if isinstance(exc, TimeoutError) or _named(exc, _TIMEOUT_NAMES):
        return TIMEOUT
    if (
        isinstance(exc, ConnectionRefusedError)
        or (isinstance(exc, OSError) and exc.errno in _REFUSED_ERRNOS)
        or _named(exc, _CONNECT_NAMES)
    ):
        return CONNECT
    if isinstance(exc, BrokenPipeError) or _named(exc, _DISCONNECTED_NAMES):
        return DISCONNECTED
    if is_reset(exc):
        return RESET
    return f"io_{type(exc).__name__}"


def lost_connection_class(exc: BaseException | None) -> str:
    """The error class of a connection that ended before its answer was complete
    (``asyncio.Protocol.connection_lost``'s ``exc``; ``None`` for a clean close)."""
    return RESET if is_reset(exc) else DISCONNECTED
