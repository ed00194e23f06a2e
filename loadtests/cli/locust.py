"""``servelab locust``: headless Locust with servelab's users, target and result file (the
planning and running are ``loadtests.locust_integration.runner``'s)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Final

from loadtests.locust_integration.runner import LOCUSTFILE
from loadtests.options import Subcommands
from targets.spec import DEFAULT_MODEL_SPEC

COMMANDS: Final = ("locust",)
HELP: Final = """\
usage: servelab locust [--model SPEC] [--out FILE] [--json] [-f LOCUSTFILE] [LOCUST OPTIONS] [USERS]

Headless Locust with servelab's users (RestUser, GrpcUser, GrpcStreamUser, BatchUser, EdgeUser),
exact percentiles and a servelab result file. Without --host/--grpc-host, the target the users
need is started on loopback (--model SPEC). Other options go to Locust (see `locust --help`),
e.g. -u 16 -t 30s --processes 2 --threshold 'p99<50ms' --invalid-fraction 0.05 --seed 7.

Your own locustfile (-f my.py, or -f loadtests/locustfile.py,my.py) runs your users, recorded
and gated the same way; servelab's users then run only when named, and yours need --host.

options:
  --model SPEC     the model of the target servelab starts, and run.model (default: reference)
  --out FILE       the result file (default: results/locust-<time>.json)
  --json           print the summary as JSON
  -f LOCUSTFILE    Locust files, comma-separated (default: servelab's loadtests/locustfile.py)
  -h, --help       show this help and exit

examples:
  servelab locust -u 4 -t 5s RestUser --threshold 'p99<50ms'
  servelab locust -t 5s GrpcStreamUser --model synthetic:lognormal:5ms:0.5 --out r.json
  servelab locust -f my_locustfile.py --host http://127.0.0.1:8000 -u 4 -t 10s
"""


def add_parser(commands: Subcommands) -> None:
    """``locust`` takes everything after it verbatim (Locust's options are its own), so its
    parser has no option prefix; ``main`` picks servelab's options out."""
    # ``servelab locust -h`` prints ``HELP`` (locust_main): this parser sees no options
    locust = commands.add_parser(
        "locust", help="headless Locust + result file", prefix_chars="+", add_help=False,
        epilog=HELP[HELP.index("examples:"):],
    )  # fmt: skip
    locust.add_argument(
        "locust_args", nargs=argparse.REMAINDER,
        help="servelab's options (see -h), Locust's options and user classes",
    )  # fmt: skip


def _own_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="servelab locust", add_help=False, allow_abbrev=False)
    parser.add_argument("--out")
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-f", "--locustfile", default=str(LOCUSTFILE))
    parser.add_argument("-h", "--help", action="store_true")
    return parser


def main(args: argparse.Namespace) -> int:
    from loadtests.cli.display import print_summary
    from loadtests.locust_integration.document import default_result_path
    from loadtests.locust_integration.runner import (
        add_cost,
        option_value,
        plan_arguments,
        plan_locustfiles,
        run_with_targets,
    )
    from loadtests.results.result import ResultFileError, load_result

    own, rest = _own_parser().parse_known_args(args.locust_args)
    if own.help:
        print(HELP, end="")
        return 0
    tokens = [arg for arg in rest if arg != "--"]
    locustfile, default_user = plan_locustfiles(own.locustfile, tokens)
    locust_args, start = plan_arguments(tokens, default_user=default_user)
    given = option_value(locust_args, "--result")
    out = Path(own.out or given or default_result_path())
    if own.out or given is None:  # the last --result wins in Locust's parser
        locust_args += ["--result", str(out)]
    model = own.model or DEFAULT_MODEL_SPEC
    if own.model is not None or start:  # named, or the model of the target servelab starts
        locust_args += ["--model", model]
    # While targets start and stop, SIGTERM acts as Ctrl-C so the ExitStack still stops them;
    # while Locust runs, the runner passes signals on to it.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code, targets, target_cpu = run_with_targets(model, locustfile, locust_args, start)
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        result = load_result(out)
    except ResultFileError as exc:
        print(f"servelab: locust exited with {code} and left no result ({exc})", file=sys.stderr)
        return code or 2
    if targets:
        add_cost(result, target_cpu)
        from loadtests.results.result import write_result

        write_result(out, result)
    print_summary(result, str(out), as_json=own.json, rich=sys.stdout.isatty())
    return 130 if result["run"]["partial"] else code
