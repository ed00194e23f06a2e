"""Atomic file writes and ready files. Stdlib only.

Every file servelab writes goes through ``write_atomic``: a temporary file in the same directory,
fsync, then ``os.replace``, so a crash leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically (same-directory temp file + rename), as ``mode``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # mkstemp creates 0600
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_ready_file(path: str | os.PathLike[str], info: dict[str, Any]) -> None:
    """Announce a bound address (``{"host", "port", "url"|"address", "pid"}``) once serving."""
    write_atomic(path, (json.dumps(info, sort_keys=True) + "\n").encode())


def read_ready_file(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ready file's content, or ``None`` while it does not exist yet."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    info: dict[str, Any] = json.loads(text)
    return info
