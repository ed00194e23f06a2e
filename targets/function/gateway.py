"""HTTP requests as API Gateway v2 (HTTP API / Lambda function URL, payload format 2.0) events,
and a function's answer back as HTTP. Stdlib only; the front and the tests use it.

A request body that is not UTF-8 travels base64-encoded (``isBase64Encoded``), as the
platforms send it. Headers are lower-cased and repeated ones joined with commas; cookies travel
apart (``cookies``), as in the 2.0 format. An answer without a ``statusCode`` is, as a function
URL takes it, a JSON body with status 200.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

COLD_START_HEADER: Final = "x-servelab-cold-start"  # "1": this request started its instance
INIT_MS_HEADER: Final = "x-servelab-init-ms"  # the instance's init: process start + model load
INSTANCE_HEADER: Final = "x-servelab-instance"  # which instance answered (1, 2, ...)
STATS_PATH: Final = "/_servelab/front"  # the front's own figures; never sent to the function
# Hop-by-hop and framing headers the front sets itself (RFC 9110 §7.6.1).
_NOT_FORWARDED: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "upgrade"}
)


def http_event(
    *,
    method: str,
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    request_id: str,
    source_ip: str = "127.0.0.1",
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The API Gateway v2 event of one HTTP request (``query``: the raw query string)."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "cookie":
            cookies += [part.strip() for part in value.split(";") if part.strip()]
        elif lowered not in _NOT_FORWARDED:
            joined[lowered] = f"{joined[lowered]},{value}" if lowered in joined else value
    when = now or dt.datetime.now(dt.UTC)
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": joined,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "servelab-front",
            "domainName": joined.get("host", "localhost"),
            "domainPrefix": "servelab-front",
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": when.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(when.timestamp() * 1000),
        },
        "body": text,
        "isBase64Encoded": encoded,
    }
    if cookies:
        event["cookies"] = cookies
    return event


def http_answer(result: Mapping[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """A function's answer as (status, headers, body); ``ValueError`` naming what is wrong
    when the answer is not one a platform could send on."""
    if "statusCode" not in result:  # a function URL sends any other JSON value as the body
        return 200, [("content-type", "application/json")], orjson.dumps(dict(result))
    status = result["statusCode"]
    if type(status) is not int or not 100 <= status <= 599:
        raise ValueError(f"the function answered statusCode {status!r}")
    headers = [
        (str(name).lower(), str(value))
        for name, value in (result.get("headers") or {}).items()
        if str(name).lower() not in _NOT_FORWARDED
    ]
    headers += [("set-cookie", str(cookie)) for cookie in result.get("cookies") or ()]
    body = result.get("body") or ""
    if not isinstance(body, str):
        raise ValueError(f"the function answered a body of type {type(body).__name__}")
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    return status, headers, data
