"""``servelab locust`` (headless Locust with servelab's users, target and result file) and
``servelab import-locust`` (an old Locust ``--csv`` output as a result file).

    servelab locust [--model SPEC] [--out FILE] [--json] [-f LOCUSTFILE] [LOCUST OPTIONS] [USERS]

Everything but servelab's four options goes to Locust unchanged. ``-f`` may name locustfiles of
your own, alone or beside servelab's: servelab's recording (``locust_integration/plugin.py``:
its options, result file and gates) is always loaded with them (``plan_locustfiles``), and
servelab's users run only when named — so Locust runs yours. Added when missing:
``--headless``, ``-u 8`` (``servelab run``'s default concurrency), ``-r`` = ``-u`` (Locust's
1 user/s would spend a short run ramping), ``-t 10s`` (none of these three with ``--shape``),
the user class ``RestUser`` (only without a locustfile of your own), and — when no ``--host`` /
``--grpc-host`` names one — the target the chosen servelab users need, started on a free loopback
port (``launch_target``) and stopped afterwards (your users need ``--host``, or their own).
Locust runs as a subprocess (its gevent patching never enters this process) with its output on
stderr; the summary goes to stdout; the exit code is Locust's (1 when a ``--threshold`` failed),
130 for an interrupted run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from loadtests.results.document import ResultDocument

LOCUSTFILE: Final = Path(__file__).parents[1] / "locustfile.py"
SHAPES: Final = Path(__file__).parents[1] / "locust_integration" / "shapes.py"
PLUGIN: Final = (
    Path(__file__).parents[1] / "locust_integration" / "plugin.py"
)  # servelab's recording, no users
DEFAULT_USERS: Final = "8"
DEFAULT_RUN_TIME: Final = "10s"
# which target servelab starts for each of its user classes (None: needs none)
TARGET_OF_USER: Final = {
    "RestUser": "rest", "EdgeUser": "rest", "GrpcUser": "grpc", "GrpcStreamUser": "grpc",
    "BatchUser": None,
}  # fmt: skip
CPU_POLL_S: Final = 0.1
QUIT_GRACE_S: Final = 30.0  # Locust's time to write its partial result after SIGTERM


def _is(name: str, path: Path) -> bool:
    return Path(name).resolve() == path.resolve()


def plan_locustfiles(locustfile: str, tokens: Sequence[str]) -> tuple[str, str | None]:
    """(the ``-f`` Locust gets, the user class to add when no servelab user is named).
    servelab's files only: as given, default ``RestUser``. With a file of your own: servelab's
    locustfile when one of its users is named in ``tokens`` (to define it), else the plugin —
    servelab's options and recording without its users, so Locust runs yours — in place of any
    servelab locustfile or plugin listed; no default user (yours, or those named, run)."""
    files = [name for name in locustfile.split(",") if name]
    if all(_is(name, LOCUSTFILE) or _is(name, SHAPES) or _is(name, PLUGIN) for name in files):
        return locustfile, "RestUser"
    wanted = LOCUSTFILE if any(token in TARGET_OF_USER for token in tokens) else PLUGIN
    planned: list[str] = []
    for name in files:
        kept = str(wanted) if _is(name, LOCUSTFILE) or _is(name, PLUGIN) else name
        if kept not in planned:
            planned.append(kept)
    if str(wanted) not in planned:
        planned.append(str(wanted))
    return ",".join(planned), None


def option_value(tokens: Sequence[str], *names: str) -> str | None:
    """The last value of a Locust option in ``tokens`` (``-u 8``, ``--users=8``, ``-u8``)."""
    value = None
    for index, token in enumerate(tokens):
        for name in names:
            if token == name and index + 1 < len(tokens):
                value = tokens[index + 1]
            elif name.startswith("--") and token.startswith(name + "="):
                value = token.split("=", 1)[1]
            elif len(name) == 2 and token.startswith(name) and len(token) > 2 and token[2] != "-":
                value = token[2:]
    return value


def plan_arguments(
    tokens: list[str], *, default_user: str | None = "RestUser"
) -> tuple[list[str], list[str]]:
    """(Locust arguments with servelab's defaults, the target kinds servelab must start).
    ``default_user`` is added when no servelab user is named (``None`` for a foreign locustfile,
    whose users and targets servelab cannot know: give ``--host`` then)."""
    args = list(tokens)
    shaped = option_value(args, "--shape") is not None
    if "--headless" not in args:
        args.append("--headless")
    users = option_value(args, "-u", "--users")
    if users is None and not shaped:
        users = DEFAULT_USERS
        args += ["-u", users]
    if option_value(args, "-r", "--spawn-rate") is None and users is not None:
        args += ["-r", users]
    if option_value(args, "-t", "--run-time") is None and not shaped:
        args += ["-t", DEFAULT_RUN_TIME]
    classes = [token for token in args if token in TARGET_OF_USER]
    if not classes and default_user is not None:
        classes = [default_user]
        args.append(default_user)
    host = option_value(args, "-H", "--host")
    grpc_host = option_value(args, "--grpc-host")
    needed = {TARGET_OF_USER[name] for name in classes} - {None}
    start = []
    if "rest" in needed and host is None:
        start.append("rest")
    if "grpc" in needed and grpc_host is None and (host is None or host.startswith("http")):
        start.append("grpc")
    return args, start


def run_with_targets(
    model: str, locustfile: str, locust_args: list[str], start: list[str]
) -> tuple[int, list[str], list[tuple[float, float]]]:
    """Start the targets Locust needs, run it, stop them: (exit code, the kinds started, their
    CPU samples)."""
    from loadtests.jobs.launch import launch_target

    with ExitStack() as stack:
        targets = {kind: stack.enter_context(launch_target(kind, model_spec=model))
                   for kind in start}  # fmt: skip
        if "rest" in targets:
            locust_args += ["--host", targets["rest"].url]
        if "grpc" in targets:
            locust_args += ["--grpc-host", targets["grpc"].address]
        if option_value(locust_args, "--shape") is not None and SHAPES.name not in locustfile:
            locustfile += f",{SHAPES}"  # --shape needs the shape class loaded
        command = [sys.executable, "-m", "locust", "-f", locustfile, *locust_args]
        code, target_cpu = _run(command, [target.pid for target in targets.values()])
    return code, list(targets), target_cpu


def _run(command: list[str], target_pids: list[int]) -> tuple[int, list[tuple[float, float]]]:
    """Run Locust (output to our stderr) while sampling the started targets' CPU seconds;
    returns its exit code and the ``(wall clock s, cpu s)`` samples. SIGINT/SIGTERM of this
    process are passed to Locust as SIGTERM — its graceful quit, which writes the partial
    result — and Locust gets ``QUIT_GRACE_S`` to do so before it is killed."""
    from loadtests.results.environment import process_tree_cpu_s

    samples: list[tuple[float, float]] = []
    asked_to_stop_at: list[float] = []

    def sample() -> None:
        if target_pids:
            samples.append((time.time(), sum(process_tree_cpu_s(pid) for pid in target_pids)))

    process = subprocess.Popen(command, stdout=sys.stderr)

    def forward(_signum: int, _frame: object) -> None:
        asked_to_stop_at.append(time.monotonic())
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while process.poll() is None:
            sample()
            if asked_to_stop_at and time.monotonic() - asked_to_stop_at[0] > QUIT_GRACE_S:
                process.kill()  # Locust did not quit: what it measured is lost, not the target
            time.sleep(CPU_POLL_S)
    finally:
        code = process.wait()
        if code < 0:  # ended by a signal: the shell's 128 + N, not a negative exit status
            code = 128 - code
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sample()
    return code, samples


def _at(samples: list[tuple[float, float]], when_s: float) -> float:
    """CPU seconds at ``when_s``, interpolated between samples."""
    previous = samples[0]
    for current in samples:
        if current[0] >= when_s:
            span = current[0] - previous[0]
            share = (when_s - previous[0]) / span if span > 0 else 1.0
            return previous[1] + (current[1] - previous[1]) * min(max(share, 0.0), 1.0)
        previous = current
    return samples[-1][1]


def add_cost(result: ResultDocument, samples: list[tuple[float, float]]) -> None:
    """The started targets' CPU over the test window (``extra.generator.window_epoch_s``)."""
    extra, summary = result["extra"], result["summary"]
    window = extra.get("generator", {}).get("window_epoch_s")
    if not samples or not window:
        return
    cpu_s = max(_at(samples, window[1]) - _at(samples, window[0]), 0.0)
    predictions = float(summary["predictions_per_s"]) * float(summary["window_s"])
    result["cost"] = {
        "target_cpu_s": cpu_s,
        "cpu_s_per_1k_predictions": cpu_s / predictions * 1000 if predictions else None,
        "scope": "target process tree (started by servelab locust)",
        "source": "started",
    }
