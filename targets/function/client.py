"""Reading a front's own figures (``GET /_servelab/front``), blocking. Stdlib only.

The run reads them at the start and the end of its measured window: the instances' CPU
seconds over it are the function's cost with scale-to-zero (``instance_cpu_s``).
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from targets.function.gateway import STATS_PATH


def front_stats(base_url: str, *, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The front's figures, or ``None`` when it does not answer them (not a servelab front,
    gone, not JSON)."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)
    try:
        connection.request("GET", parts.path.rstrip("/") + STATS_PATH)
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            return None
        stats = json.loads(body)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()
    return stats if isinstance(stats, dict) else None


def instance_cpu_s(base_url: str) -> float | None:
    """CPU seconds the front's instances used so far (live and retired ones)."""
    stats = front_stats(base_url)
    value = None if stats is None else stats.get("instance_cpu_s")
    return float(value) if isinstance(value, int | float) else None
