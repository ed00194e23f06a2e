"""``servelab batch score INPUT --out OUTPUT``: the command around ``score_path``. Stdlib only."""

from __future__ import annotations

import argparse
import sys
from typing import Final

from targets.batch.partitions import score_path
from targets.batch.report import format_summary
from targets.errors import ModelFailure
from targets.spec import load_model

EXIT_MODEL_FAILURE: Final = 1


def main(args: argparse.Namespace) -> int:
    """Score ``args.input``; 0 on success (bad rows included), 1 when the model fails.

    Bad input (a missing or unreadable INPUT, an unsupported type, an output that cannot be
    written, a bad SPEC) is raised as ``InputError``/``SpecError`` for ``loadtests.cli.app`` to
    print as one line with exit 2.
    """
    model = load_model(args.model)

    def notify(message: str) -> None:
        print(f"batch score: {message}", file=sys.stderr, flush=True)

    try:
        report = score_path(
            args.input,
            args.out,
            model=model,
            batch_size=args.batch_size,
            errors_path=args.errors,
            notify=notify,
        )
    except ModelFailure as exc:
        # A server fault, not a usage error: its own exit code, and no output was written for
        # the failing file (finished partitions keep theirs and are skipped on a re-run).
        message = " ".join(str(exc).split())
        print(f"servelab batch score: {message}", file=sys.stderr)
        return EXIT_MODEL_FAILURE
    print(format_summary(report, batch_size=args.batch_size), file=sys.stderr)
    return 0
