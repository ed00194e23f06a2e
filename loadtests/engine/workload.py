"""Seeded payloads: what each request carries.

One ``--seed`` derives two independent seeds (as MLPerf LoadGen keeps payload and schedule
seeds apart), so changing the arrival pattern does not change the payloads and vice versa.
Payload ``i`` depends only on the payload seed and ``i``: the same seed gives the same payloads,
bit for bit, whatever the schedule or the transport.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from loadtests.errors import LoadOptionError

ApiName = Literal["v1", "v2"]
INVALID_BODIES: Final[tuple[dict[str, Any], ...]] = (
    {"instances": ["not-a-number"]},
    {"instances": [[1.0, 2.0]]},  # nested list in v1
    {"instances": [None]},
    {"features": [1.0]},  # missing 'instances'
)


def derive_seeds(seed: int) -> tuple[int, int]:
    """(payload seed, schedule seed) from one run seed."""
    payload, schedule = np.random.SeedSequence(seed).spawn(2)
    return int(payload.generate_state(1)[0]), int(schedule.generate_state(1)[0])


@dataclass(frozen=True, slots=True)
class Payload:
    """One request's content; ``body`` is the canonical JSON object for ``api``. ``slot``: its
    place in the pool (a deliberately invalid payload's kind, for contracts other than
    servelab's, is chosen by it)."""

    api: ApiName
    rows: list[list[float]]
    body: dict[str, Any]
    valid: bool = True
    slot: int = 0

    @property
    def expected_predictions(self) -> int:
        return len(self.rows)

    def json_bytes(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class PayloadSpec:
    """How payloads are drawn.

    ``instances``: features per row, uniform in [min, max]; values ~ Normal(mean, std) rounded to
    4 decimals; ``rows_per_request``: rows in a v2 request (v1 always carries one row);
    ``invalid_fraction``: share of deliberately invalid bodies (expected rejections);
    ``v2_share_start`` → ``v2_share_end``: share of v2 requests, shifting linearly over the run
    (a rollout); ``distinct``: how many distinct payloads are cycled (small ⇒ repeats, which
    the edge cache notices).
    """

    min_instances: int = 8
    max_instances: int = 8
    value_mean: float = 0.0
    value_std: float = 1.0
    rows_per_request: int = 1
    invalid_fraction: float = 0.0
    v2_share_start: float = 0.0
    v2_share_end: float | None = None
    distinct: int = 4096
    data: str | None = None  # --data FILE: real rows, in seeded order (engine/data.py)

    def __post_init__(self) -> None:
        if not 0 <= self.min_instances <= self.max_instances:
            raise LoadOptionError("instances must satisfy 0 <= min <= max")
        if self.rows_per_request < 1:
            raise LoadOptionError("rows_per_request must be a positive int")
        if not 0.0 <= self.invalid_fraction <= 1.0:
            raise LoadOptionError("invalid_fraction must be between 0 and 1")
        for share in (self.v2_share_start, self.v2_share_end):
            if share is not None and not 0.0 <= share <= 1.0:
                raise LoadOptionError("v2 share must be between 0 and 1")
        if self.distinct < 1:
            raise LoadOptionError("distinct must be a positive int")
        if not (math.isfinite(self.value_mean) and math.isfinite(self.value_std)):
            raise LoadOptionError("value mean and std must be finite")

    @classmethod
    def from_options(
        cls,
        *,
        api: str = "v1",
        v2_share: Sequence[float | None] | None = None,
        instances: Sequence[float | None] = (8, 8),
        rows_per_request: int = 1,
        invalid_fraction: float = 0.0,
        distinct: int = 4096,
        data: str | None = None,
    ) -> PayloadSpec:
        """The spec the payload options describe (``loadtests.options.PAYLOAD_OPTIONS``),
        whoever read them: ``servelab run``, a bench cell, Locust's parser. ``instances``: N or
        (N, M); ``v2_share``: (START, END or None), which replaces ``api``. Pairs may arrive as
        lists (Locust sends options to its workers as msgpack)."""
        low, high = (instances[0], instances[-1]) if len(instances) else (8, None)
        if v2_share is None:
            start, end = (1.0 if api == "v2" else 0.0), None
        else:
            start, end = float(v2_share[0] or 0.0), v2_share[-1] if len(v2_share) > 1 else None
        return cls(
            min_instances=int(low or 0),
            max_instances=int(low or 0) if high is None else int(high),
            rows_per_request=rows_per_request,
            invalid_fraction=invalid_fraction,
            v2_share_start=start,
            v2_share_end=None if end is None else float(end),
            distinct=distinct,
            data=data,
        )


class PayloadGenerator:
    """Payload ``i`` = f(seed, i mod distinct, progress): a pool of ``distinct`` slots, each with
    its rows, its api draw and its validity draw, made once; requests cycle through the pool, so
    picking a payload costs a few list look-ups."""

    def __init__(self, spec: PayloadSpec, seed: int) -> None:
        self.spec = spec
        rng = np.random.default_rng(seed)
        rows = self._draw_rows(rng, spec.distinct * spec.rows_per_request)
        self._api_draws: list[float] = rng.random(spec.distinct).tolist()
        self._invalid: list[bool] = (rng.random(spec.distinct) < spec.invalid_fraction).tolist()
        per = spec.rows_per_request
        self._v1 = [Payload("v1", [rows[slot * per]], {"instances": rows[slot * per]})
                    for slot in range(spec.distinct)]  # fmt: skip
        self._v2 = []
        for slot in range(spec.distinct):
            chunk = rows[slot * per : (slot + 1) * per]
            body = {"rows": chunk} if per > 1 else {"instances": chunk[0]}
            self._v2.append(Payload("v2", chunk, body))
        self._bad = [
            Payload(api, [], dict(INVALID_BODIES[slot % len(INVALID_BODIES)]), False, slot)
            for slot in range(spec.distinct)
            for api in ("v1", "v2")
        ]

    def _draw_rows(self, rng: np.random.Generator, count: int) -> list[list[float]]:
        spec = self.spec
        if spec.data is not None:  # the file's rows, in an order the seed fixes
            from loadtests.engine.data import read_rows

            table = read_rows(spec.data)
            order = np.resize(rng.permutation(len(table)), count)
            real: list[list[float]] = table[order].tolist()
            return real
        sizes = rng.integers(spec.min_instances, spec.max_instances + 1, size=count)
        values = np.round(rng.normal(spec.value_mean, spec.value_std, size=int(sizes.sum())), 4)
        flat = values.tolist()
        rows, start = [], 0
        for size in sizes.tolist():
            rows.append(flat[start : start + size])
            start += size
        return rows

    def v2_share(self, progress: float) -> float:
        """Share of v2 requests at ``progress`` (0..1 through the run)."""
        start = self.spec.v2_share_start
        end = start if self.spec.v2_share_end is None else self.spec.v2_share_end
        return start + (end - start) * min(max(progress, 0.0), 1.0)

    def pool(self) -> Iterator[Payload]:
        """Each distinct payload ``payload`` can return over the run, once (for a driver to
        encode before the load)."""
        shares = (self.v2_share(0.0), self.v2_share(1.0))
        low, high = min(shares), max(shares)
        for slot, draw in enumerate(self._api_draws):
            for is_v2 in (False, True):
                if (draw < high) if is_v2 else (draw >= low):
                    yield (
                        self._bad[2 * slot + is_v2]
                        if self._invalid[slot]
                        else (self._v2[slot] if is_v2 else self._v1[slot])
                    )

    def payload(self, index: int, progress: float = 0.0) -> Payload:
        slot = index % self.spec.distinct
        is_v2 = self._api_draws[slot] < self.v2_share(progress)
        if self._invalid[slot]:
            return self._bad[2 * slot + is_v2]
        return self._v2[slot] if is_v2 else self._v1[slot]
