"""Each third-party server's configuration, written into its private folder: one writer per server.

A writer takes the server's environment, the folder, the joblib model, the model's name and any
settings; it writes the files the server reads (MLServer's settings.json and model-settings.json,
KServe's model module, BentoML's service module), picks free loopback ports and returns a
``Launch``: the command, the extra environment and where the server will answer.
``launch.start`` runs it. A new server is one writer and one entry in ``WRITERS``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Launch:
    """How to start a configured server and where it will answer."""

    argv: list[str]
    env: dict[str, str]
    http_port: int
    grpc_port: int | None  # None: this server speaks no gRPC here (BentoML)
    ready_path: str  # 200 once the model is loaded
    infer_path: str
    metadata_path: str | None  # OIP model metadata (MLServer, KServe)
    metrics_url: str  # a path on the HTTP port, or a whole URL (MLServer's own metrics port)


Writer = Callable[[Path, Path, Path, str, Mapping[str, object]], Launch]


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


def write_mlserver(
    env_dir: Path, workdir: Path, model_path: Path, model_name: str, settings: Mapping[str, object]
) -> Launch:
    http_port, grpc_port, metrics_port = free_ports(3)
    server_settings: dict[str, object] = {
        "host": HOST,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        # one inference worker process (MLServer's default): 0 runs inference in the server
        # process itself and works too, see `settings` in launch.start()
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
    return Launch(
        argv=[str(python), str(env_dir / "bin" / "mlserver"), "start", str(workdir)],
        env={},
        # /v2/health/ready says 200 even when the model failed to load: poll the model's own
        http_port=http_port,
        grpc_port=grpc_port,
        ready_path=f"{model_url}/ready",
        infer_path=f"{model_url}/infer",
        metadata_path=model_url,
        metrics_url=f"http://{HOST}:{metrics_port}/metrics",
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


def write_kserve(
    env_dir: Path, workdir: Path, model_path: Path, model_name: str, settings: Mapping[str, object]
) -> Launch:
    if settings:
        raise ValueError(f"settings: only mlserver takes settings, not kserve ({dict(settings)})")
    http_port, grpc_port = free_ports(2)
    module = workdir / "kserve_model.py"
    module.write_text(KSERVE_MODULE.format(model_name=model_name, model_path=str(model_path)))
    model_url = f"/v2/models/{model_name}"
    argv = [str(env_dir / "bin" / "python"), str(module)]
    # KServe binds 0.0.0.0 whatever it is told: send to 127.0.0.1 only
    argv += ["--http_port", str(http_port), "--grpc_port", str(grpc_port)]
    return Launch(
        argv=argv,
        env={},
        http_port=http_port,
        grpc_port=grpc_port,
        ready_path=f"{model_url}/ready",
        infer_path=f"{model_url}/infer",
        metadata_path=model_url,
        metrics_url="/metrics",
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


def write_bentoml(
    env_dir: Path, workdir: Path, model_path: Path, model_name: str, settings: Mapping[str, object]
) -> Launch:
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
    return Launch(
        argv=argv,
        env=env,
        http_port=http_port,
        grpc_port=None,
        ready_path="/readyz",
        infer_path="/predict",
        metadata_path=None,
        metrics_url="/metrics",
    )


# name -> how to configure it
WRITERS: dict[str, Writer] = {
    "mlserver": write_mlserver,
    "kserve": write_kserve,
    "bentoml": write_bentoml,
}
