"""The environment fingerprint recorded with every result, and CPU accounting of processes."""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from loadtests.engine.loop import running_loop_name
from targets.procstat import process_cpu_s

KEY_PACKAGES = (
    "servelab", "numpy", "hdrhistogram", "fastapi", "uvicorn", "grpcio", "protobuf",
    "aiohttp", "uvloop", "locust", "orjson",
)  # fmt: skip


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def fingerprint() -> dict[str, Any]:
    """hostname, CPU model, logical cores, memory, OS, Python, key package versions."""
    packages = {name: version for name in KEY_PACKAGES if (version := _version(name))}
    return {
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count() or 0,
        "memory_bytes": _memory_bytes(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "event_loop": running_loop_name(),
        "packages": packages,
    }


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and its living descendants (Linux /proc; 0 elsewhere)."""
    total, stack, seen = 0.0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        total += process_cpu_s(current)
        stack.extend(_children(current))
    return total
