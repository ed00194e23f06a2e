"""The capacity sweep's curve: achieved throughput against p99, with the SLO and the knee."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from reports.charts import colour, new_figure, png_bytes
from targets.files import write_atomic


def sweep_figure(summary: dict[str, Any]) -> Figure:
    """Steps and search points as (throughput, p99); SLO as a horizontal line; knee marked."""
    points = sorted(summary["points"], key=lambda point: point["rate"])
    slo = float(summary["settings"]["slo_p99_ms"])
    figure = new_figure(8, 4.5)
    axes = figure.add_subplot()
    for index, phase in enumerate(("step", "search")):
        chosen = [point for point in points if point["phase"] == phase]
        axes.plot(
            [point["throughput_rps"] for point in chosen],
            [point["p99_ms"] for point in chosen],
            marker="o" if phase == "step" else "s",
            linestyle="-" if phase == "step" else "none",
            color=colour(index),
            label=f"{phase} points",
        )
    axes.axhline(slo, color=colour(5), linestyle="--", label=f"SLO p99 {slo:g} ms")
    knee = summary.get("knee_rps")
    if knee is not None:
        axes.axvline(knee, color=colour(2), linestyle=":", label=f"knee {knee:g} req/s")
    capacity = summary.get("capacity_rps")
    if capacity is not None:
        axes.axvline(
            capacity, color=colour(3), linestyle="-.", label=f"capacity {capacity:g} req/s"
        )
    axes.set_yscale("log")
    axes.set_xlabel("achieved throughput (requests/s)")
    axes.set_ylabel("p99 latency from intended start (ms, log)")
    target = summary["settings"]["target"]
    axes.set_title(f"Capacity sweep: {target}, {summary['settings']['model']}")
    axes.legend(loc="upper left")
    return figure


def write_sweep_chart(summary: dict[str, Any], path: Path) -> Path:
    write_atomic(path, png_bytes(sweep_figure(summary)))
    return path
