"""``servelab compare BASELINE CANDIDATE [--threshold EXPR]... [--markdown]``: a regression gate.

Exit 0 when every threshold holds, 1 when one is breached *and* the breach is significant, 2 for
bad input (unreadable file, unknown metric, malformed expression — one line naming it, via
``loadtests.cli.app.dispatch``), 3 for an INVALID run given as either side (``--allow-invalid`` to
compare anyway). The success-rate gate (``SUCCESS_GATE``) is always there unless the user names
``success_rate`` / ``fail_ratio`` or passes ``--no-default-gate``: a candidate that measured a
dead server is never "faster". "Significant" means: for a relative threshold (``p99:+10%``)
the bootstrap interval of the ratio excludes 1 on the breaching side; for an absolute one
(``p99<50ms``) the candidate's whole interval is on the wrong side of the limit. A breach that is
not significant is reported and passes: noise must not fail a build. Without ``--threshold`` the
gate is ``DEFAULT_THRESHOLDS``.

BASELINE and CANDIDATE are each a result file, a directory or a glob; several runs are treated
as repeats of one group.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from loadtests.errors import LoadOptionError
from loadtests.results.gates import EXIT_BREACH, EXIT_INVALID, EXIT_OK, with_default_gate
from loadtests.results.result import ResultFileError
from loadtests.results.thresholds import (
    SUCCESS_BLOCKS,
    RelativeThreshold,
    Threshold,
    _latency_metric,  # the grammar's own metric -> summary block; no second list here
    parse_thresholds,
)
from reports.load import Run, expand_inputs, read_run
from reports.stats import DEFAULT_METRICS, Comparison, compare_groups, interval
from reports.tables import change, markdown_table, md_escape, number

DEFAULT_THRESHOLDS: Final = ("p50:+10%", "p99:+10%", "throughput_rps:-10%")
SUCCESS_GATE: Final = "success_rate:-1%"  # a significant fall of the success rate fails
EXIT_PASS, EXIT_REGRESSION = EXIT_OK, EXIT_BREACH


class InvalidRunRefused(ResultFileError):
    """An INVALID run given to compare without ``--allow-invalid`` (exit 3)."""


@dataclass(frozen=True, slots=True)
class GateResult:
    """One threshold's outcome: breached at the point estimate, and significantly so."""

    expression: str
    breached: bool
    significant: bool
    detail: str

    @property
    def failed(self) -> bool:
        return self.breached and self.significant

    @property
    def outcome(self) -> str:
        if not self.breached:
            return "pass"
        return "FAIL" if self.significant else "breached, not significant (pass)"


def read_group(item: str, role: str, *, include_invalid: bool) -> list[Run]:
    """Every run named by ``item``; ``ResultFileError`` names the first unusable one."""
    paths, problems = expand_inputs([item])
    if problems:
        raise ResultFileError(f"{role} {problems[0]}")
    runs = [read_run(path) for path in paths]
    for run in runs:
        if not run.valid and not include_invalid:
            reasons = "; ".join(run.reasons) or "no reason recorded"
            raise InvalidRunRefused(
                f"{run.path}: {role} run is invalid ({reasons}); compare refuses invalid runs "
                "(--allow-invalid to compare anyway)"
            )
    return runs


def pseudo_summary(metric: str, value: float) -> dict[str, Any]:
    """A minimal summary in which ``metric`` reads ``value`` (so a pooled figure can be checked
    by the one threshold module, whose grammar says which block a latency metric is in)."""
    if metric == "fail_ratio":
        return {"success_rate": 1.0 - value}
    latency = _latency_metric(metric)
    if latency is not None:
        block, key = latency
        return {block: {key: value}}
    return {metric: value}


def gate(
    thresholds: Sequence[Threshold],
    comparisons: dict[str, Comparison],
    candidate: Sequence[Run],
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> list[GateResult]:
    results = []
    nothing_succeeded = not any(int(run.summary.get("successes") or 0) for run in candidate)
    for threshold in thresholds:
        found = comparisons[threshold.metric]
        block = _latency_metric(threshold.metric)
        if nothing_succeeded and block is not None and block[0] in SUCCESS_BLOCKS:
            # an empty histogram reads 0 ms: a candidate where nothing succeeded is never fast
            detail = f"{threshold.metric}: the candidate has no successful request"
            results.append(GateResult(threshold.expression, True, True, detail))
            continue
        if isinstance(threshold, RelativeThreshold):
            check = threshold.check_pair(
                pseudo_summary(found.metric, found.baseline),
                pseudo_summary(found.metric, found.candidate),
            )
            grew = threshold.allowed_change >= 0
            significant = found.ci_low > 1.0 if grew else found.ci_high < 1.0
            detail = f"{check.detail}; 95 % CI of change {change(found.ci_low)} … " + change(
                found.ci_high
            )
        else:
            check = threshold.check(pseudo_summary(found.metric, found.candidate))
            _, low, high = interval(
                [run.sample for run in candidate],
                threshold.metric,
                resamples=resamples,
                confidence=confidence,
                seed=seed,
            )
            significant = not any(
                threshold.check(pseudo_summary(threshold.metric, end)).passed for end in (low, high)
            )
            detail = f"{check.detail}; candidate interval [{number(low)}, {number(high)}]"
        results.append(GateResult(threshold.expression, not check.passed, significant, detail))
    return results


def comparison_table(comparisons: Sequence[Comparison]) -> tuple[list[str], list[list[str]]]:
    headers = ["metric", "baseline", "candidate", "change", "95% CI of change", "verdict"]
    rows = [
        [
            c.metric,
            number(c.baseline),
            number(c.candidate),
            change(c.ratio),
            "exact" if c.exact else f"[{change(c.ci_low)}, {change(c.ci_high)}]",
            c.verdict,
        ]
        for c in comparisons
    ]
    return headers, rows


def _plain(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def gate_expressions(given: Sequence[str] | None, *, default_gate: bool) -> list[str]:
    """The user's thresholds (or the defaults), with the success-rate gate unless replaced."""
    return with_default_gate(
        list(given or DEFAULT_THRESHOLDS), default_gate=default_gate, gate=SUCCESS_GATE
    )


def main(args: argparse.Namespace) -> int:
    """``servelab compare`` (``loadtests.cli.compare`` parses the options)."""
    expressions = gate_expressions(args.threshold, default_gate=not args.no_default_gate)
    thresholds = parse_thresholds(expressions)  # ThresholdError: one line, exit 2
    if not 0 < args.confidence < 1:
        raise LoadOptionError(f"--confidence must be between 0 and 1, got {args.confidence}")
    try:
        baseline = read_group(args.baseline, "baseline", include_invalid=args.include_invalid)
        candidate = read_group(args.candidate, "candidate", include_invalid=args.include_invalid)
    except InvalidRunRefused as exc:
        print(f"servelab: {exc}", file=sys.stderr)
        return EXIT_INVALID
    scopes = [
        {str(r.summary.get("latency_scope", "all")) for r in g} for g in (baseline, candidate)
    ]
    if scopes[0] != scopes[1]:
        print(
            f"servelab: warning: latency covers {'/'.join(sorted(scopes[0]))} requests in the "
            f"baseline, {'/'.join(sorted(scopes[1]))} in the candidate (an older result file): "
            "latencies are not like for like",
            file=sys.stderr,
        )
    for role, runs in (("baseline", baseline), ("candidate", candidate)):
        if len({run.key for run in runs}) > 1:
            print(
                f"servelab: warning: {role} mixes configurations; pooled as repeats",
                file=sys.stderr,
            )
    metrics = list(dict.fromkeys([*DEFAULT_METRICS, *(t.metric for t in thresholds)]))
    found = compare_groups(
        [run.sample for run in baseline],
        [run.sample for run in candidate],
        metrics,
        resamples=args.resamples,
        confidence=args.confidence,
        seed=args.seed,
    )
    results = gate(
        thresholds,
        {c.metric: c for c in found},
        candidate,
        resamples=args.resamples,
        confidence=args.confidence,
        seed=args.seed,
    )
    failed = _print_comparison(args, baseline, candidate, found, results)
    return EXIT_REGRESSION if failed else EXIT_PASS


def _print_comparison(
    args: argparse.Namespace,
    baseline: Sequence[Run],
    candidate: Sequence[Run],
    found: Sequence[Comparison],
    results: Sequence[GateResult],
) -> list[GateResult]:
    """The comparison table, the gates and the verdict line, plain or Markdown; the gates that
    failed."""
    headers, rows = comparison_table(found)
    gate_headers = ["threshold", "result", "detail"]
    gate_rows = [[r.expression, r.outcome, r.detail] for r in results]
    source = "" if args.threshold else " (defaults; set with --threshold)"
    title = (
        f"baseline: {len(baseline)} run(s) {args.baseline} · "
        f"candidate: {len(candidate)} run(s) {args.candidate}"
    )
    if args.markdown:
        print(
            f"### servelab compare\n\n{md_escape(title)}\n\n"
            f"{markdown_table(headers, rows)}\n\n**Thresholds**{source}\n\n"
            f"{markdown_table(gate_headers, gate_rows)}"
        )
    else:
        print(
            f"{title}\n\n{_plain(headers, rows)}\n\nthresholds{source}:\n"
            f"{_plain(gate_headers, gate_rows)}"
        )
    failed = [r for r in results if r.failed]
    verdict = "regression: " + ", ".join(r.expression for r in failed) if failed else "pass"
    print(f"\n{'**' + verdict + '**' if args.markdown else verdict}")
    return failed
