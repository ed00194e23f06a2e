"""One function instance: a process that runs the init phase once and then the handler for one
event at a time, as a platform's runtime does (``python -m targets.function.instance``).

It speaks JSON lines with the front over its stdin and stdout, the emulation's stand-in for a
platform's runtime API: first ``{"ready": true, "init_ms": ...}`` once the handler is built (or
``{"ready": false, "error": ...}`` and exit 1), then for each ``{"event": ..., "request_id":
..., "deadline_ms": ...}`` line one answer line — the handler's result, or ``{"statusCode":
502, ...}`` when the handler raised (a function URL answers a function error 502). Anything the
app prints goes to stderr, so stdout carries only the protocol. EOF on stdin ends it, without
the app's shutdown (a platform kills an environment); Ctrl-C is the front's (ignored here).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import IO, Any, Final

import orjson

MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024  # one line of the protocol (Lambda's limit is 6 MB)


def function_error(code: str, message: str, status: int = 502) -> dict[str, Any]:
    """An answer in the canonical error body, as the front and the instance send one."""
    body = orjson.dumps({"error": {"code": code, "message": message}}).decode()
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": body}


def _write(out: IO[bytes], message: object) -> None:
    out.write(orjson.dumps(message) + b"\n")
    out.flush()


def serve(out: IO[bytes], lines: IO[bytes]) -> int:
    """Init, announce, then answer each event line until EOF."""
    from targets.function.handler import LambdaContext

    started = time.perf_counter()
    try:
        from targets.function import entry  # the init phase, as a platform runs it
    except Exception as exc:
        _write(out, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _write(out, {"ready": True, "init_ms": (time.perf_counter() - started) * 1e3})
    for line in lines:
        if not line.strip():
            continue
        invocation = orjson.loads(line)
        context = LambdaContext(
            aws_request_id=str(invocation.get("request_id", "")),
            deadline_ms=int(invocation.get("deadline_ms", 0)),
        )
        try:
            answer = entry.handler(invocation["event"], context)
        except Exception as exc:  # the function's own failure: reported, the instance lives on
            answer = function_error("function_error", f"{type(exc).__name__}: {exc}")
        _write(out, answer)
    return 0


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt stdout
    sys.stdout = sys.stderr
    code = serve(out, sys.stdin.buffer)
    sys.stderr.flush()
    # A platform freezes or kills an environment, it never shuts the app down: neither does
    # this (the app's lifespan task is still pending, and would be reported at exit).
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
