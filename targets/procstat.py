"""A process's own CPU time from Linux ``/proc``: what the function front charges its instances
and what ``loadtests.results.environment`` sums over a target's process tree."""

from __future__ import annotations

import os
from pathlib import Path


def process_cpu_s(pid: int) -> float:
    """utime + stime of one process (Linux ``/proc``; 0 once it is gone or elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
