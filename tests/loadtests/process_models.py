"""Models for the ``--processes`` tests, loaded in each generator process
(``--model tests.loadtests.process_models:DyingModel``): one that crashes one process, one that
says when each process has begun measuring."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

DIE_AFTER = 300
EXIT_CODE = 7


def _mean(rows: Sequence[Sequence[float]]) -> list[float]:
    return [sum(row) / len(row) if row else 0.0 for row in rows]


class DyingModel:
    """The first process to load it, by an exclusive claim on the file
    ``$SERVELAB_TEST_DIE_CLAIM``, exits abruptly (``os._exit(7)``, as a crash would) after
    ``DIE_AFTER`` calls; any other process answers the rows' mean."""

    name = "dying"
    version = "1"

    def __init__(self) -> None:
        self.calls = 0
        self.dies = False
        claim = os.environ.get("SERVELAB_TEST_DIE_CLAIM")
        if claim:
            try:
                os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            self.dies = True

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        self.calls += 1
        if self.dies and self.calls > DIE_AFTER:
            os._exit(EXIT_CODE)
        return _mean(rows)


class MarkingModel:
    """Writes ``$SERVELAB_TEST_MARK_DIR/<pid>`` at its first call: a test polls for one file per
    process to know that every process is measuring."""

    name = "marking"
    version = "1"

    def __init__(self) -> None:
        self.mark: Path | None = Path(os.environ["SERVELAB_TEST_MARK_DIR"]) / str(os.getpid())

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        if self.mark is not None:
            self.mark.touch()
            self.mark = None
        return _mean(rows)
