"""The Python API: build a workload and a driver, run, get the summary and the result.

    from loadtests import InProcessDriver, LoadPlan, PayloadSpec, run_load_test
    from targets import load_model

    outcome = run_load_test(
        InProcessDriver(load_model("synthetic:lognormal:5ms:0.5")),
        plan=LoadPlan(mode="closed", concurrency=8, duration_s=None, requests=5_000),
        payloads=PayloadSpec(invalid_fraction=0.05),
        virtual_time=True,  # exact, reproducible numbers in a fraction of the wall time
    )
    print(outcome.summary["latency_ms"]["p99"], outcome.verdict.valid)

Inside a running event loop (Jupyter), ``await run_load_test_async(...)`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loadtests.drivers.base import DriverBase
from loadtests.engine.clock import run_virtual
from loadtests.engine.harness import Harness, LoadPlan
from loadtests.engine.loop import run as run_on_loop
from loadtests.engine.recorder import Recorder
from loadtests.engine.workload import PayloadGenerator, PayloadSpec, derive_seeds
from loadtests.results.document import ResultDocument, SummaryBlock
from loadtests.results.environment import fingerprint
from loadtests.results.result import RunInfo, Verdict, build_result, write_result
from loadtests.results.verdict import judge_run


@dataclass(frozen=True, slots=True)
class LoadTestOutcome:
    result: ResultDocument
    recorder: Recorder
    verdict: Verdict

    @property
    def summary(self) -> SummaryBlock:
        return self.result["summary"]


async def run_load_test_async(
    driver: DriverBase,
    *,
    plan: LoadPlan,
    payloads: PayloadSpec | None = None,
    seed: int = 42,
    model: str = "",
    out: str | Path | None = None,
) -> LoadTestOutcome:
    """Run ``plan`` against ``driver`` in the running loop; optionally write the result file."""
    payload_seed, schedule_seed = derive_seeds(seed)
    harness = Harness(
        driver, PayloadGenerator(payloads or PayloadSpec(), payload_seed), plan,
        schedule_seed=schedule_seed,
    )  # fmt: skip
    recorder = await harness.run()
    # the same rule as ``servelab run``: the driver says whether its target runs in this process
    verdict = judge_run(recorder, harness.stats, mode=plan.mode, in_process=driver.in_process)
    run = RunInfo(
        target=driver.transport, transport=driver.transport, mode=plan.mode, model=model,
        seed=seed, concurrency=plan.concurrency if plan.mode == "closed" else None,
        duration_s=plan.duration_s, requests_limit=plan.requests, warmup_s=plan.warmup_s,
        partial=harness.stats.interrupted,
    )  # fmt: skip
    result = build_result(
        run, recorder, window_s=harness.stats.window_s, verdict=verdict, environment=fingerprint()
    )
    if out is not None:
        write_result(out, result)
    return LoadTestOutcome(result, recorder, verdict)


def run_load_test(
    driver: DriverBase,
    *,
    plan: LoadPlan,
    payloads: PayloadSpec | None = None,
    seed: int = 42,
    model: str = "",
    out: str | Path | None = None,
    virtual_time: bool = False,
) -> LoadTestOutcome:
    """Blocking form of ``run_load_test_async``; ``virtual_time`` for in-process drivers only."""

    async def main() -> LoadTestOutcome:
        return await run_load_test_async(
            driver, plan=plan, payloads=payloads, seed=seed, model=model, out=out
        )

    return run_virtual(main) if virtual_time else run_on_loop(main())
