"""Atomic file writes, ready files, and the paths a user names. Stdlib only.

Every file servelab writes goes through ``write_atomic``: a temporary file in the same directory,
fsync, then ``os.replace``, so a crash leaves the old file or the new one, never half of one.

``user_path`` is where an ``OSError`` on a path the user named becomes an ``InputError``: only
when the error is about the path itself, which the user can fix.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from targets.errors import InputError

TMP_PREFIX = ".tmp-"
# errno values that say a path will not do: missing, not a directory, not allowed, read-only...
# Anything else (a full disk, too many open files, an I/O error) is not the user's to fix.
PATH_ERRNOS: Final = frozenset(
    {
        errno.EACCES,
        errno.EEXIST,
        errno.EISDIR,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EPERM,
        errno.EROFS,
    }
)


@contextlib.contextmanager
def user_path(verb: str, what: str, path: str | os.PathLike[str]) -> Iterator[None]:
    """Around the opening (or creating) of a path the user named as ``what``: an ``OSError``
    about the path itself becomes ``InputError("cannot VERB WHAT 'PATH': why")``; any other
    ``OSError`` propagates as it is."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in PATH_ERRNOS:
            raise
        reason = exc.strerror or str(exc)
        raise InputError(f"cannot {verb} {what} {str(path)!r}: {reason}") from exc


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
    """Announce a bound address (``{"host", "port", "url"|"address", "pid"}``) once serving;
    ``InputError`` when ``--ready-file`` cannot be written there."""
    with user_path("write", "--ready-file", path):
        write_atomic(path, (json.dumps(info, sort_keys=True) + "\n").encode())


def read_ready_file(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ready file's content, or ``None`` while it does not exist yet."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    info: dict[str, Any] = json.loads(text)
    return info
