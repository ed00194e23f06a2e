"""servelab load generation: workloads, the harness, drivers, recorder and result files.

Importing this package is light (no numpy until a run is built) and has no side effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loadtests.drivers.base import Driver, DriverBase, FakeDriver
    from loadtests.drivers.inprocess import AsgiDriver, InProcessDriver
    from loadtests.drivers.rest import RestDriver
    from loadtests.engine.harness import LoadPlan
    from loadtests.engine.records import Outcome, RequestRecord
    from loadtests.engine.schedule import RateProfile
    from loadtests.engine.workload import PayloadSpec
    from loadtests.jobs.api import LoadTestOutcome, run_load_test, run_load_test_async

_EXPORTS = {
    "AsgiDriver": "loadtests.drivers.inprocess",
    "Driver": "loadtests.drivers.base",
    "DriverBase": "loadtests.drivers.base",
    "FakeDriver": "loadtests.drivers.base",
    "InProcessDriver": "loadtests.drivers.inprocess",
    "LoadPlan": "loadtests.engine.harness",
    "LoadTestOutcome": "loadtests.jobs.api",
    "Outcome": "loadtests.engine.records",
    "PayloadSpec": "loadtests.engine.workload",
    "RateProfile": "loadtests.engine.schedule",
    "RequestRecord": "loadtests.engine.records",
    "RestDriver": "loadtests.drivers.rest",
    "run_load_test": "loadtests.jobs.api",
    "run_load_test_async": "loadtests.jobs.api",
}
__all__ = [
    "AsgiDriver",
    "Driver",
    "DriverBase",
    "FakeDriver",
    "InProcessDriver",
    "LoadPlan",
    "LoadTestOutcome",
    "Outcome",
    "PayloadSpec",
    "RateProfile",
    "RequestRecord",
    "RestDriver",
    "run_load_test",
    "run_load_test_async",
]


def __getattr__(name: str) -> Any:
    """Lazy re-exports: ``from loadtests import run_load_test`` imports only what it needs."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'loadtests' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
