"""The committed gRPC code is what ``make proto`` generates from the committed .proto files.

Regenerated into a temporary directory with the pinned grpcio-tools and mypy-protobuf plugins
(the same commands as the Makefile's ``proto`` target) and compared byte for byte. A failure
means a .proto changed without ``make proto``, or the pins moved.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
CURRENT = ("predict_pb2.py", "predict_pb2_grpc.py", "predict_pb2.pyi", "predict_pb2_grpc.pyi")
LEGACY = ("predict_v1_pb2.py", "predict_v1_pb2_grpc.py")
# The Open Inference Protocol: no grpc-stub .pyi (see the Makefile's proto target).
OIP = ("inference_pb2.py", "inference_pb2_grpc.py", "inference_pb2.pyi")


def protoc(*args: str) -> None:
    for plugin in ("protoc-gen-mypy", "protoc-gen-mypy_grpc"):
        if not (BIN_DIR / plugin).exists():
            pytest.fail(f"{plugin} not found next to {sys.executable}: pip install -e '.[dev]'")
    env = {**os.environ, "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def assert_same(generated: Path, committed: Path, names: tuple[str, ...]) -> None:
    stale = [
        name for name in names if (generated / name).read_bytes() != (committed / name).read_bytes()
    ]
    assert not stale, f"{committed}: {', '.join(stale)} out of date; run `make proto`"


def test_current_proto_code_is_fresh(tmp_path: Path) -> None:
    outputs = [
        f"--{kind}_out={tmp_path}" for kind in ("python", "grpc_python", "mypy", "mypy_grpc")
    ]
    protoc("-I", ".", *outputs, "targets/rpc/predict.proto")
    assert_same(tmp_path / "targets" / "rpc", REPO / "targets" / "rpc", CURRENT)


def test_oip_proto_code_is_fresh(tmp_path: Path) -> None:
    outputs = [f"--{kind}_out={tmp_path}" for kind in ("python", "grpc_python", "mypy")]
    protoc("-I", ".", *outputs, "targets/rpc/inference.proto")
    assert_same(tmp_path / "targets" / "rpc", REPO / "targets" / "rpc", OIP)
    assert not (tmp_path / "targets" / "rpc" / "inference_pb2_grpc.pyi").exists()


def test_legacy_v1_proto_code_is_fresh(tmp_path: Path) -> None:
    legacy = "tests/targets/legacy"
    protoc(
        "-I",
        legacy,
        f"--python_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        f"{legacy}/predict_v1.proto",
    )
    assert_same(tmp_path, REPO / legacy, LEGACY)
