"""Hardware profiles: constrain the serving side on one machine, and record what was measured.

A profile pins the server processes to a CPU set (every uvicorn worker inherits the affinity),
sets the number of server workers and caps math-library threads. The load generator is kept on
the other CPUs where the machine has any. What is recorded is read back — affinity with
``sched_getaffinity`` for every process of the server's tree, the worker count, the thread caps —
not what was asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.errors import LoadOptionError

THREAD_CAP_VARIABLES = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    name: str = "default"
    cpus: tuple[int, ...] | None = None
    workers: int = 1
    threads: int | None = None

    def __post_init__(self) -> None:
        if not self.name or any(ch in self.name for ch in "/\\\n"):
            raise LoadOptionError(
                f"profile name {self.name!r} must be non-empty, without / or newlines"
            )
        if self.workers < 1:
            raise LoadOptionError(f"profile {self.name!r}: workers must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise LoadOptionError(f"profile {self.name!r}: threads must be >= 1")
        if self.cpus is not None:
            available = os.sched_getaffinity(0)
            missing = sorted(set(self.cpus) - available)
            if not self.cpus or missing:
                raise LoadOptionError(
                    f"profile {self.name!r}: cpus {list(self.cpus)} not available here "
                    f"(this machine offers {sorted(available)})"
                )

    def server_env(self) -> dict[str, str]:
        if self.threads is None:
            return {}
        return dict.fromkeys(THREAD_CAP_VARIABLES, str(self.threads))

    def server_args(self, kind: str) -> tuple[str, ...]:
        return ("--workers", str(self.workers)) if kind == "rest" and self.workers > 1 else ()

    def generator_cpus(self) -> set[int] | None:
        """CPUs the load generator should use: the ones the server does not, if any are left."""
        if self.cpus is None:
            return None
        rest = os.sched_getaffinity(0) - set(self.cpus)
        return rest or None


def _tree(pid: int) -> list[int]:
    pids, stack = [], [pid]
    while stack:
        current = stack.pop()
        pids.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            children = []
        stack.extend(int(child) for child in children)
    return pids


def _env_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in pairs}


def _workers(pids: list[int]) -> int:
    """Server workers in a tree: uvicorn's spawned worker processes, or the server itself."""
    spawned = 0
    for process in pids[1:]:
        try:
            command = Path(f"/proc/{process}/cmdline").read_bytes()
        except OSError:
            continue
        spawned += b"spawn_main" in command  # not the multiprocessing resource tracker
    return spawned or 1


def measure_server(profile: HardwareProfile, pid: int | None) -> dict[str, Any]:
    """The profile as measured on the running server tree (or on this process if ``pid`` is
    None: in-process targets serve from the generator's own process)."""
    pids = _tree(pid) if pid else [os.getpid()]
    affinity: dict[str, list[int]] = {}
    for process in pids:
        try:
            affinity[str(process)] = sorted(os.sched_getaffinity(process))
        except OSError:
            continue
    env = _env_of(pids[0]) if pid else dict(os.environ)
    return {
        "name": profile.name,
        "requested": {"cpus": profile.cpus, "workers": profile.workers, "threads": profile.threads},
        "server_cpus_measured": sorted({cpu for cpus in affinity.values() for cpu in cpus}),
        "affinity_by_pid": affinity,
        "server_processes": len(affinity),
        "workers_measured": _workers(pids) if pid else 1,
        "thread_caps": {name: env.get(name) for name in THREAD_CAP_VARIABLES},
        "generator_cpus_measured": sorted(os.sched_getaffinity(0)),
    }


@contextmanager
def generator_pinned(profile: HardwareProfile) -> Iterator[None]:
    """Keep this (generator) process off the server's CPUs while the block runs."""
    cpus = profile.generator_cpus()
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
