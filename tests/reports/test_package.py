"""The reports package: a sorted lazy API, and no matplotlib until a chart is drawn."""

from __future__ import annotations

import subprocess
import sys


def test_reports_import_no_matplotlib_until_a_chart_is_drawn() -> None:
    probe = (
        "import sys\n"
        "import reports, loadtests.cli.report, reports.load, reports.stats, reports.analysis,"
        " reports.compare\n"
        "print(sorted(m for m in ('matplotlib', 'pyplot') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_public_api_is_sorted_and_lazy() -> None:
    import reports

    assert reports.__all__ == sorted(reports.__all__)
    for name in reports.__all__:
        assert getattr(reports, name) is not None, name
