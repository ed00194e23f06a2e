"""User models for tests, loaded through ``--model tests.targets.sample_models:NAME``."""

from __future__ import annotations

from collections.abc import Sequence


class ExplodingModel:
    """Raises on every call: a server fault, which must answer 500 / INTERNAL."""

    name = "exploding"
    version = "0.1"

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        raise RuntimeError("model weights are corrupt")

    async def predict_async(self, rows: Sequence[Sequence[float]]) -> list[float]:
        raise RuntimeError("model weights are corrupt")


def double_sum(rows: Sequence[Sequence[float]]) -> list[float]:
    """A plain function of rows."""
    return [2.0 * sum(row) for row in rows]


class SumModel:
    """A class built with no arguments, with ``predict`` only."""

    version = "2.1"

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return [float(sum(row)) for row in rows]
