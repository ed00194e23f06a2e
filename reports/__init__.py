"""servelab reports: result files in; comparisons with bootstrap intervals, regression gates,
charts, and HTML / Markdown / CSV / JSON out.

    from reports import build_report
    build_report(["results/"], "report/")

Importing this package is light (no numpy, no matplotlib until something is computed or drawn)
and has no side effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reports.analysis import Analysis, analyse
    from reports.build import Report, build_report
    from reports.load import Cell, Run, group_cells, load_runs
    from reports.stats import Comparison, RunSample, compare_groups, estimate, interval

_EXPORTS = {
    "Analysis": "reports.analysis",
    "Cell": "reports.load",
    "Comparison": "reports.stats",
    "Report": "reports.build",
    "Run": "reports.load",
    "RunSample": "reports.stats",
    "analyse": "reports.analysis",
    "build_report": "reports.build",
    "compare_groups": "reports.stats",
    "estimate": "reports.stats",
    "group_cells": "reports.load",
    "interval": "reports.stats",
    "load_runs": "reports.load",
}
__all__ = [
    "Analysis",
    "Cell",
    "Comparison",
    "Report",
    "Run",
    "RunSample",
    "analyse",
    "build_report",
    "compare_groups",
    "estimate",
    "group_cells",
    "interval",
    "load_runs",
]


def __getattr__(name: str) -> Any:
    """Lazy re-exports: ``from reports import build_report`` imports only what it needs."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'reports' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
