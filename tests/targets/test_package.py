"""Package hygiene: a sorted public API and imports without side effects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import targets


def test_public_api_is_sorted_and_importable() -> None:
    assert targets.__all__ == sorted(targets.__all__)
    for name in targets.__all__:
        assert hasattr(targets, name), name


def test_importing_the_packages_is_light_and_starts_nothing() -> None:
    probe = (
        "import sys, threading\n"
        "import targets, loadtests.cli.app, loadtests, reports\n"
        "heavy = sorted(m for m in ('fastapi', 'grpc', 'uvicorn', 'gevent', 'numpy', 'orjson')"
        " if m in sys.modules)\n"
        "print(heavy, threading.active_count())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[] 1"


def test_core_modules_run_on_a_bare_python() -> None:
    """schema, models, SPECs and the service run with ``-I -S``: no third-party packages."""
    probe = (
        "import sys; sys.path.insert(0, '.')\n"
        "from targets.spec import load_model\n"
        "from targets.service import PredictionService\n"
        "service = PredictionService(load_model('synthetic:fixed:1ms'), transport='edge')\n"
        "print(service.predict(service.parse({'instances': [1, 2, 3]}, 'v1'))['predictions'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "[1.7]"
