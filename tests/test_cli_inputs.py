"""Every wrong option, missing file, bad duration/rate/SPEC and conflicting flag: one line on
stderr naming the option or file and what is wrong with it, exit code 2, no traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtests.cli.app import COMMANDS, build_parser, dispatch, main
from loadtests.options import Range, RangePair, StageList
from targets.errors import TargetStartError

MISSING = "/no/such/path/servelab-test"

CASES = [
    # serve
    (["serve", "rest", "--port", "x"], "--port"),
    (["serve", "rest", "--port", "70000"], "--port"),
    (["serve", "rest", "--workers", "0"], "--workers"),
    (["serve", "rest", "--model", "synthetic:fixed"], "synthetic:fixed"),
    (["serve", "rest", "--model", f"sklearn:{MISSING}"], MISSING),
    (["serve", "grpc", "--model", f"onnx:{MISSING}"], MISSING),
    (["serve", "rest", "--model", f"sklearn:{__file__}"], "is not a joblib file"),
    (["serve", "rest", "--model", f"onnx:{__file__}"], "is not an ONNX model"),
    (["serve", "rest", "--model", "sklearn:"], "needs a PATH"),
    (["serve", "grpc", "--max-message-bytes", "-1"], "--max-message-bytes"),
    (["serve", "grpc", "--window-ms", "abc"], "--window-ms"),
    (["serve", "udp"], "udp"),
    # run
    (["run"], "--target"),
    (["run", "--target", "rest", "--rate", "-3"], "--rate"),
    (["run", "--target", "rest", "--duration", "5 minutes"], "--duration"),
    (["run", "--target", "rest", "--warmup", "x"], "--warmup"),
    (["run", "--target", "rest", "--rate", "10", "--concurrency", "2"], "--concurrency"),
    (["run", "--target", "rest", "--duration", "1s", "--requests", "5"], "--requests"),
    (["run", "--target", "rest", "--url", "http://example.com"], "--url"),
    (["run", "--target", "grpc", "--address", "192.168.1.5:50051"], "--address"),
    (["run", "--target", "inprocess", "--model", "pkg_missing_xyz:model"], "pkg_missing_xyz"),
    (["run", "--target", "inprocess", "--model", f"onnx:{MISSING}"], MISSING),
    (["run", "--target", "inprocess", "--trace", MISSING], MISSING),
    (["run", "--target", "inprocess", "--stages", "10s"], "--stages"),
    (["run", "--target", "inprocess", "--v2-share", "2"], "--v2-share"),
    (["run", "--target", "inprocess", "--instances", "9:3"], "--instances"),
    (["run", "--target", "rest", "--loop", "tight"], "--loop"),
    (["run", "--target", "inprocess", "--loop", "tight", "--concurrency", "4"], "--loop"),
    (["run", "--target", "inprocess", "--loop", "fast"], "--loop"),
    (["run", "--target", "inprocess", "--loop", "tight", "--events", "e.jsonl"], "--events"),
    (["run", "--target", "rest", "--url", "127.0.0.1:8000"], "--url"),
    (["run", "--target", "grpc", "--url", "http://127.0.0.1:5"], "--url"),
    (["run", "--target", "rest", "--address", "127.0.0.1:5"], "--address"),
    (["run", "--target", "rest", "--url", "http://127.0.0.1:5/v1/predict"], "/v1/predict"),
    (["run", "--target", "inprocess", "--threshold", "p99<<2"], "p99<<2"),
    (["run", "--target", "rest", "--client", "httpx"], "--client"),
    # bench
    (["bench", "--config", MISSING], MISSING),
    (["bench", "--threshold", "p99<<2"], "p99<<2"),
    # sweep
    (["sweep", "--target", "rest", "--slo-p99", "fast"], "--slo-p99"),
    (["sweep", "--target", "rest", "--url", "http://10.0.0.1:80"], "--url"),
    # batch / stream / edge
    (["batch", "score", MISSING, "--out", "/tmp/servelab-never"], MISSING),
    (["batch", "score", MISSING, "--out", "o", "--batch-size", "0"], "--batch-size"),
    (["stream", "--batch-size", "none"], "--batch-size"),
    (["edge", "bundle", "--out", "/tmp/e.pyz", "--quant", "int3:1"], "--quant"),
    (["edge", "bundle", "--out", "/tmp/e.pyz", "--model", "tests.targets.sample_models:SumModel"],
     "tests.targets.sample_models:SumModel"),
    (["edge", "bundle", "--out", "/tmp/e.pyz", "--model", "digits"], "'digits' cannot be bundled"),
    # reports
    (["report", MISSING, "--out", "/tmp/servelab-report-never"], MISSING),
    (["compare", MISSING, MISSING], MISSING),
    # locust
    (["import-locust", MISSING, "--out", "/tmp/x.json"], MISSING),
    (["nosuchcommand"], "nosuchcommand"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "culprit"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_line_naming_the_culprit(
    argv: list[str], culprit: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    # `servelab report` warns once per input it skips, then gives its one-line verdict
    lines = [line for line in captured.err.splitlines() if "skipped" not in line]
    assert len(lines) == 1, captured.err
    assert culprit in captured.err, captured.err
    assert "Traceback" not in captured.err


# -- every numeric option, walked from the parser ----------------------------------------------

Declared = Range | RangePair | StageList
NON_NUMBERS = ("twelve", "", "1e400x", "0x10")


@dataclass(frozen=True)
class NumericOption:
    command: tuple[str, ...]  # ("serve", "rest")
    flag: str
    declared: Declared
    required: tuple[str, ...]  # what the command needs besides the probed option
    default: object

    def argv(self, value: str) -> list[str]:
        return [*self.command, *self.required, f"{self.flag}={value}"]  # `=`: "-1" is a value


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every leaf command of ``parser`` with its path (``("edge", "bundle")``)."""
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subcommands:
        yield path, parser
    for action in subcommands:
        for name, sub in action.choices.items():
            yield from _commands(sub, (*path, name))


def _required(parser: argparse.ArgumentParser) -> tuple[str, ...]:
    """Filler for the positionals and required options, so only the probed value can fail."""
    words: list[str] = []
    for action in parser._actions:
        value = str(next(iter(action.choices))) if action.choices else "x"
        if not action.option_strings:
            words.append(value)
        elif action.required:
            words += [action.option_strings[-1], value]
    return tuple(words)


def _numeric_options() -> list[NumericOption]:
    options = []
    for command, parser in _commands(build_parser()):
        for action in parser._actions:
            if action.type is None:
                continue
            # a bare int/float (or any other type) would be a number whose range nobody declared
            assert isinstance(action.type, Declared), (command, action.option_strings)
            flag = action.option_strings[-1]
            options.append(
                NumericOption(command, flag, action.type, _required(parser), action.default)
            )
    return options


def _inside(declared: Range, value: float) -> bool:
    """Whether ``value`` lies in the range ``declared`` declares (read independently of
    ``Range.contains``)."""
    if not math.isfinite(value) or (declared.kind == "int" and value != int(value)):
        return False
    low, high = declared.low, declared.high
    if low is not None and (value <= low if declared.low_open else value < low):
        return False
    return high is None or (value < high if declared.high_open else value <= high)


def _number_probes(declared: Range) -> list[tuple[str, bool]]:
    """(text, inside?) for 0, a negative, NaN, ±inf, each bound and just past it, a value
    inside, and words that are no number at all."""
    values = {0.0, -1.0, 1.0, 1.5, math.nan, math.inf, -math.inf}
    for bound in (declared.low, declared.high):
        if bound is not None:
            values |= {bound - 1, bound, bound + 1}
    if declared.low is not None and declared.high is not None:
        values.add((declared.low + declared.high) / 2)
    probes = [(text, False) for text in NON_NUMBERS]
    for value in sorted(values, key=lambda value: (math.isnan(value), value)):
        integral = math.isfinite(value) and value == int(value)
        text = str(int(value)) if integral else str(value)
        if declared.kind == "duration":
            probes += [(f"{text}s", _inside(declared, value))]
            if math.isfinite(value):
                probes += [(f"{value * 1e3:g}ms", _inside(declared, value))]
        else:
            probes.append((text, _inside(declared, value)))
    return probes


def _probes(declared: Declared) -> list[tuple[str, bool]]:
    if isinstance(declared, Range):
        return _number_probes(declared)
    if isinstance(declared, RangePair):
        part = _number_probes(declared.part)
        fine = min((text for text, ok in part if ok), key=declared.part.read)
        least = declared.part.read(fine)
        probes = [*part, (f"{fine}:{fine}:{fine}", False), (":", False)]
        for text, ok in part:
            value = declared.part.read(text) if ok else math.nan
            probes += [
                (f"{fine}:{text}", ok),
                (f"{text}:{fine}", ok and not (declared.ordered and value > least)),
            ]
        return probes
    duration, rate = _number_probes(declared.duration), _number_probes(declared.rate)
    good_duration = next(text for text, ok in duration if ok)
    good_rate = next(text for text, ok in rate if ok)
    good = f"{good_duration}:{good_rate}"
    return [
        *((f"{text}:{good_rate}", ok) for text, ok in duration),
        *((f"{good_duration}:{text}", ok) for text, ok in rate),
        *((f"{good},{good_duration}:{text}", ok) for text, ok in rate),
        (good_duration, False),
        ("", False),
    ]


class _ParseOnly(dict[str, str]):
    """A handler table naming ``parsed`` for every command: a probe never starts anything."""

    def __missing__(self, command: str) -> str:
        return f"{__name__}:parsed"


def parsed(_args: argparse.Namespace) -> int:
    return 0


NUMERIC_OPTIONS = _numeric_options()


def test_the_walk_reaches_every_command() -> None:
    reached = {" ".join(command) for command, _ in _commands(build_parser())}
    assert reached == set(COMMANDS)
    assert len(NUMERIC_OPTIONS) > len({option.command for option in NUMERIC_OPTIONS})


@pytest.mark.parametrize(
    "option", NUMERIC_OPTIONS, ids=[" ".join((*o.command, o.flag)) for o in NUMERIC_OPTIONS]
)
def test_each_numeric_option_refuses_what_its_range_excludes(
    option: NumericOption, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    probes = _probes(option.declared)
    assert any(ok for _, ok in probes), probes  # a range nothing fits is a broken one
    assert not all(ok for _, ok in probes), probes
    if isinstance(option.declared, Range) and isinstance(option.default, int | float):
        assert _inside(option.declared, option.default), option.default
    wrong = []
    for text, inside in probes:
        code = dispatch(parser, _ParseOnly(), option.argv(text))
        err = capsys.readouterr().err
        if inside:
            ok = code == 0 and not err
        else:
            lines = err.splitlines()
            ok = code == 2 and len(lines) == 1 and f"argument {option.flag}:" in lines[0]
        if not ok:
            wrong.append((text, "should parse" if inside else "should be refused", code, err))
    assert not wrong, wrong


# -- a target servelab starts refuses its arguments --------------------------------------------


def test_a_target_refusing_its_model_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run.json"
    argv = ["run", "--target", "rest", "--model", "nosuch.module:fn", "--duration", "1s"]
    code = main([*argv, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert "nosuch.module:fn" in err
    assert "refused its arguments" in err
    assert "Traceback" not in err
    assert not out.exists()


def target_failed(args: argparse.Namespace) -> int:
    # the target's exit code travels in --model, so one handler covers every case
    raise TargetStartError("rest", "it said why", None if args.model == "-" else int(args.model))


@pytest.mark.parametrize(("target_code", "expected"), [("2", 2), ("1", 2), ("-9", 2), ("-", 2)])
def test_a_target_that_did_not_come_up_is_one_line(
    target_code: str, expected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    handlers = {"demo": f"{__name__}:target_failed"}
    code = dispatch(build_parser(), handlers, ["demo", f"--model={target_code}"])
    err = capsys.readouterr().err
    assert code == expected
    assert err.count("\n") == 1, err
    assert "it said why" in err, err
