"""Start a third-party model server (MLServer, KServe, BentoML) on loopback for a test; stop it.

Stdlib only, so any test can import it. The servers run from the environments that
``make servers`` builds under ``.servers/<name>/``; each serves one scikit-learn model saved with
joblib::

    with start("mlserver", Path("digits.joblib")) as server:
        urllib.request.urlopen(server.infer_url, ...)

``start`` writes the server's config into a private folder, starts the server with its
environment's python as the leader of its own process group (stdout and stderr to
``server.log`` there), polls the model's readiness URL until it answers 200 and yields a
``RunningServer``. On exit it sends SIGTERM to the whole group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENVS_DIR = ROOT / ".servers"
HOST = "127.0.0.1"
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


@dataclass(frozen=True)
class _Launch:
    argv: list[str]
    env: dict[str, str]
    running: RunningServer


_Recipe = Callable[[Path, Path, Path, str, Mapping[str, object]], _Launch]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports the kernel handed out for 127.0.0.1:0, released for the server."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


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


def _running(
    name: str, model_name: str, http_port: int, grpc_port: int | None, workdir: Path, **urls: str
) -> RunningServer:
    base_url = f"http://{HOST}:{http_port}"
    return RunningServer(
        name=name,
        model_name=model_name,
        pid=0,
        http_port=http_port,
        grpc_port=grpc_port,
        base_url=base_url,
        ready_url=base_url + urls["ready"],
        infer_url=base_url + urls["infer"],
        metadata_url=base_url + urls["metadata"] if "metadata" in urls else None,
        metrics_url=urls["metrics"] if "://" in urls["metrics"] else base_url + urls["metrics"],
        workdir=workdir,
        log_path=workdir / LOG_NAME,
        ready_s=0.0,
    )


def _mlserver(
    env_dir: Path, workdir: Path, model_path: Path, model_name: str, settings: Mapping[str, object]
) -> _Launch:
    http_port, grpc_port, metrics_port = free_ports(3)
    server_settings: dict[str, object] = {
        "host": HOST,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        # one inference worker process (MLServer's default): 0 runs inference in the server
        # process itself and works too, see `settings` in start()
        "parallel_workers": 1,
        "debug": False,
        # both default to folders under the current directory
        "metrics_dir": str(workdir / "metrics"),
        "environments_dir": str(workdir / "envs"),
        **settings,
    }
    (workdir / "settings.json").write_text(json.dumps(server_settings, indent=2))
    model_dir = workdir / "models" / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    model_settings = {
        "name": model_name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model_path)},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    python = env_dir / "bin" / "python"
    model_url = f"/v2/models/{model_name}"
    return _Launch(
        argv=[str(python), str(env_dir / "bin" / "mlserver"), "start", str(workdir)],
        env={},
        # /v2/health/ready says 200 even when the model failed to load: poll the model's own
        running=_running(
            "mlserver",
            model_name,
            http_port,
            grpc_port,
            workdir,
            ready=f"{model_url}/ready",
            infer=f"{model_url}/infer",
            metadata=model_url,
            metrics=f"http://{HOST}:{metrics_port}/metrics",
        ),
    )


KSERVE_MODULE = '''"""KServe serving one joblib-saved scikit-learn model (written by launch.py)."""
import joblib
from kserve import Model, ModelServer
from kserve.utils.utils import get_predict_input, get_predict_response

MODEL_NAME = {model_name!r}
MODEL_PATH = {model_path!r}


class JoblibModel(Model):
    def __init__(self) -> None:
        super().__init__(MODEL_NAME)
        self.model = None

    def load(self) -> bool:
        self.model = joblib.load(MODEL_PATH)
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        # V1 gives a dict with "instances", V2 (REST and gRPC) an InferRequest
        rows = get_predict_input(payload)
        return get_predict_response(payload, self.model.predict(rows), self.name)


if __name__ == "__main__":
    model = JoblibModel()
    model.load()
    # --http_port / --grpc_port are read from sys.argv when kserve is imported
    ModelServer().start([model])
'''


def _kserve(
    env_dir: Path, workdir: Path, model_path: Path, model_name: str, settings: Mapping[str, object]
) -> _Launch:
    if settings:
        raise ValueError(f"settings: only mlserver takes settings, not kserve ({dict(settings)})")
    http_port, grpc_port = free_ports(2)
    module = workdir / "kserve_model.py"
    module.write_text(KSERVE_MODULE.format(model_name=model_name, model_path=str(model_path)))
    model_url = f"/v2/models/{model_name}"
    argv = [str(env_dir / "bin" / "python"), str(module)]
    # KServe binds 0.0.0.0 whatever it is told: send to 127.0.0.1 only
    argv += ["--http_port", str(http_port), "--grpc_port", str(grpc_port)]
    return _Launch(
        argv=argv,
        env={},
        running=_running(
            "kserve",
            model_name,
            http_port,
            grpc_port,
            workdir,
            ready=f"{model_url}/ready",
            infer=f"{model_url}/infer",
            metadata=model_url,
            metrics="/metrics",
        ),
    )


BENTOML_MODULE = '''"""BentoML serving one joblib-saved sklearn model (written by launch.py)."""
import bentoml
import joblib
import numpy as np

MODEL_PATH = {model_path!r}


@bentoml.service(workers=1)
class {class_name}:
    def __init__(self) -> None:
        self.model = joblib.load(MODEL_PATH)

    @bentoml.api
    def predict(self, instances: list[list[float]]) -> list[int]:
        return self.model.predict(np.asarray(instances, dtype=np.float64)).tolist()
'''


def _bentoml(
    env_dir: Path, workdir: Path, model_path: Path, model_name: str, settings: Mapping[str, object]
) -> _Launch:
    if settings:
        raise ValueError(f"settings: only mlserver takes settings, not bentoml ({dict(settings)})")
    (http_port,) = free_ports(1)
    class_name = "".join(part.capitalize() for part in model_name.replace("-", "_").split("_"))
    if not class_name.isidentifier():
        raise ValueError(f"model_name: {model_name!r} does not make a Python class name")
    module = workdir / "bento_service.py"
    module.write_text(BENTOML_MODULE.format(model_path=str(model_path), class_name=class_name))
    argv = [str(env_dir / "bin" / "python"), str(env_dir / "bin" / "bentoml"), "serve"]
    argv += [f"bento_service:{class_name}", "--working-dir", str(workdir)]
    argv += ["--host", HOST, "--port", str(http_port)]
    env = {"BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(workdir / "bentoml_home")}
    return _Launch(
        argv=argv,
        env=env,
        running=_running(
            "bentoml",
            model_name,
            http_port,
            None,
            workdir,
            ready="/readyz",
            infer="/predict",
            metrics="/metrics",
        ),
    )


# name -> how to configure and start it; a new server is one entry and one function
RECIPES: dict[str, _Recipe] = {"mlserver": _mlserver, "kserve": _kserve, "bentoml": _bentoml}


def env_dir_for(name: str, envs_dir: Path = ENVS_DIR) -> Path:
    if name not in RECIPES:
        raise ValueError(f"name: unknown server {name!r} (expected one of {sorted(RECIPES)})")
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
        launch = RECIPES[name](env_dir, workdir, model_path, model_name, settings or {})
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
        _wait_ready(process, launch.running, timeout_s)
        ready_s = time.monotonic() - started_s
        members.update(server_pids(process.pid))
        yield dataclasses.replace(launch.running, pid=process.pid, ready_s=round(ready_s, 2))


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
