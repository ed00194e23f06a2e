"""Start a third-party model server (MLServer, KServe, BentoML) on loopback for a test; stop it.

Stdlib only, so any test can import it. The servers run from the environments that
``make servers`` builds under ``.servers/<name>/``; each serves one scikit-learn model saved with
joblib::

    with start("mlserver", Path("digits.joblib")) as server:
        urllib.request.urlopen(server.infer_url, ...)

``start`` writes the server's config into a private folder (``configs.py``, one writer per
server), starts the server with its environment's python as the leader of its own process group
(stdout and stderr to ``server.log`` there), polls the model's readiness URL until it answers 200
and yields a ``RunningServer``. On exit it sends SIGTERM to the whole group, then SIGKILL after a
grace period.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.servers.configs import HOST, WRITERS, Launch

ROOT = Path(__file__).resolve().parents[2]
ENVS_DIR = ROOT / ".servers"
LOG_NAME = "server.log"


class ServerStartError(RuntimeError):
    """The server exited, or its model was not ready in time; the message ends with its log."""


@dataclass(frozen=True)
class RunningServer:
    """A started server: where it listens and how to reach its model."""

    name: str
    model_name: str
    pid: int  # also the process group id
    http_port: int
    grpc_port: int | None  # None: this server speaks no gRPC here (BentoML)
    base_url: str  # http://127.0.0.1:PORT
    ready_url: str
    infer_url: str  # OIP REST infer (MLServer, KServe) or BentoML's POST /predict
    metadata_url: str | None  # OIP model metadata (MLServer, KServe)
    metrics_url: str  # Prometheus text
    workdir: Path
    log_path: Path
    ready_s: float  # from start to the first 200 on ready_url

    @property
    def grpc_address(self) -> str | None:
        return None if self.grpc_port is None else f"{HOST}:{self.grpc_port}"

    def kill(self) -> None:
        """SIGKILL the server and its workers now, as a crash would (the context exit reaps)."""
        pids = server_pids(self.pid)
        _signal_group(self.pid, signal.SIGKILL)
        for pid in pids:
            _kill(pid)

    def rss_bytes(self) -> int:
        """Resident memory of the server's processes, workers included (Linux /proc)."""
        return sum(_rss_bytes(pid) for pid in server_pids(self.pid))


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) of every live (non-zombie) process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # After the ")" closing the command name: state, ppid, pgrp, ...
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def server_pids(leader: int) -> list[int]:
    """The live processes of a server: its process group and every descendant of its leader
    (BentoML's workers start sessions of their own, outside the group)."""
    table = _process_table()
    found = {pid for pid, (_ppid, pgid) in table.items() if pgid == leader}
    if leader in table:
        found.add(leader)
    grew = True
    while grew:
        children = {pid for pid, (ppid, _pgid) in table.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return sorted(found)


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _running(name: str, model_name: str, launch: Launch, workdir: Path) -> RunningServer:
    base_url = f"http://{HOST}:{launch.http_port}"
    metrics_url = launch.metrics_url
    return RunningServer(
        name=name,
        model_name=model_name,
        pid=0,
        http_port=launch.http_port,
        grpc_port=launch.grpc_port,
        base_url=base_url,
        ready_url=base_url + launch.ready_path,
        infer_url=base_url + launch.infer_path,
        metadata_url=None if launch.metadata_path is None else base_url + launch.metadata_path,
        metrics_url=metrics_url if "://" in metrics_url else base_url + metrics_url,
        workdir=workdir,
        log_path=workdir / LOG_NAME,
        ready_s=0.0,
    )


def env_dir_for(name: str, envs_dir: Path = ENVS_DIR) -> Path:
    if name not in WRITERS:
        raise ValueError(f"name: unknown server {name!r} (expected one of {sorted(WRITERS)})")
    return envs_dir / name


def is_built(name: str, envs_dir: Path = ENVS_DIR) -> bool:
    """Whether ``make servers`` has built this server's environment (its stamp is there)."""
    env_dir = env_dir_for(name, envs_dir)
    return (env_dir / ".requirements.sha256").exists() and (env_dir / "bin" / "python").exists()


def resolve_model_path(model: Path) -> Path:
    """A joblib file, or a directory holding exactly one (``export_digits(directory)`` writes)."""
    model = model.resolve()
    if model.is_dir():
        found = sorted(model.glob("*.joblib"))
        if len(found) != 1:
            raise ValueError(f"model: {model} holds {len(found)} .joblib files, expected one")
        return found[0]
    if not model.is_file():
        raise ValueError(f"model: {model} is not a file")
    return model


@contextlib.contextmanager
def start(
    name: str,
    model: Path,
    *,
    model_name: str = "digits",
    timeout_s: float = 120.0,
    grace_s: float = 10.0,
    workdir: Path | None = None,
    settings: Mapping[str, object] | None = None,
    envs_dir: Path = ENVS_DIR,
) -> Iterator[RunningServer]:
    """Start server ``name`` serving the joblib model ``model``; yield once its model is ready.

    ``workdir`` keeps the config and ``server.log`` there (default: a temporary folder, removed
    afterwards). ``settings`` overrides keys of MLServer's settings.json (e.g.
    ``{"parallel_workers": 0}``). Raises ServerStartError if the server exits or is not ready
    within ``timeout_s``; the server is stopped either way.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s: must be positive, got {timeout_s}")
    if not is_built(name, envs_dir):
        raise ServerStartError(f"{name}: no environment in {envs_dir / name}; run `make servers`")
    model_path = resolve_model_path(model)
    with contextlib.ExitStack() as cleanup:
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix=f"servelab-{name}-"))
            cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        env_dir = env_dir_for(name, envs_dir)
        launch = WRITERS[name](env_dir, workdir, model_path, model_name, settings or {})
        running = _running(name, model_name, launch, workdir)
        started_s = time.monotonic()
        with open(workdir / LOG_NAME, "wb") as log:
            process = subprocess.Popen(
                launch.argv,
                cwd=workdir,
                env=_server_environment(env_dir, launch.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaches every worker
            )
        members: set[int] = set()  # pids seen: stop() reaches them even once orphaned
        cleanup.callback(stop, process, grace_s, members)
        _wait_ready(process, running, timeout_s)
        ready_s = time.monotonic() - started_s
        members.update(server_pids(process.pid))
        yield dataclasses.replace(running, pid=process.pid, ready_s=round(ready_s, 2))


def _server_environment(env_dir: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment with the server's venv first on PATH and no PYTHONPATH, so
    nothing of servelab's own venv leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(env_dir)
    return {**env, **extra}


# readiness is polled on loopback: no proxy from the environment may see it
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _wait_ready(process: subprocess.Popen[bytes], running: RunningServer, timeout_s: float) -> None:
    deadline_s = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline_s:
        if process.poll() is not None:
            raise ServerStartError(
                f"{running.name} exited with {process.returncode} before its model was ready\n"
                + log_tail(running.log_path)
            )
        try:
            with _LOOPBACK.open(running.ready_url, timeout=2.0) as answer:
                if answer.status == 200:
                    return
                last = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise ServerStartError(
        f"{running.name}: {running.ready_url} not 200 within {timeout_s} s (last: {last})\n"
        + log_tail(running.log_path)
    )


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def stop(
    process: subprocess.Popen[bytes], grace_s: float = 10.0, known: set[int] | None = None
) -> None:
    """SIGTERM to the server's process group; SIGKILL to whatever of it (or of the leader's
    descendants, or of the ``known`` pids) is left after ``grace_s``. Returns once none of them
    is alive."""
    leader = process.pid
    members = set(server_pids(leader)) | (known or set())
    _signal_group(leader, signal.SIGTERM)
    if _wait_gone(process, members, grace_s):
        return
    _signal_group(leader, signal.SIGKILL)
    for pid in members:
        _kill(pid)
    if not _wait_gone(process, members, grace_s):
        raise ServerStartError(f"processes {sorted(_alive(members))} survived SIGKILL")


def _alive(pids: set[int]) -> set[int]:
    return pids & set(_process_table())


def _wait_gone(process: subprocess.Popen[bytes], members: set[int], timeout_s: float) -> bool:
    deadline_s = time.monotonic() + timeout_s
    while True:
        process.poll()  # reap the leader, so a zombie does not count
        members |= set(server_pids(process.pid)) if process.returncode is None else set()
        if process.returncode is not None and not _alive(members):
            return True
        if time.monotonic() >= deadline_s:
            return False
        time.sleep(0.05)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)
