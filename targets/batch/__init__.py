"""The batch target: score JSONL/CSV files, or directories of them, in model-sized batches.

``servelab batch score INPUT --out OUTPUT [--batch-size 256] [--model SPEC] [--errors FILE]``
runs ``main``; the load driver calls ``score_path`` / ``score_file`` and reads the
``BatchReport``. Modules: ``rows`` reads and validates input rows, ``scoring`` scores one file
into atomic outputs, ``partitions`` runs a directory backfill-safely, ``report`` holds the
numbers and the summary, ``command`` is the CLI. Stdlib only.
"""

from targets.batch.command import main
from targets.batch.partitions import score_directory, score_path
from targets.batch.report import BatchReport, PartitionReport, percentile
from targets.batch.scoring import score_file

__all__ = [
    "BatchReport",
    "PartitionReport",
    "main",
    "percentile",
    "score_directory",
    "score_file",
    "score_path",
]
