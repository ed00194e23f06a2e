"""servelab against ``hey`` on a real third-party server: MLServer (``make servers``) serving
the digits model over the Open Inference Protocol, same concurrency, same client core, A B B A.
``hey`` sends one fixed body; servelab its seeded 64-wide rows — the server's work per request
is the same. Skipped, saying why, when hey or the MLServer environment is missing."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from benchmarks.selfbench.common import (
    Cores,
    Row,
    abba,
    row_from_result,
    run_child,
    servelab_run,
)

SECTION = "servers"
SERVER = "MLServer 1.7.1, OIP REST"
_RATE = re.compile(r"Requests/sec:\s+([0-9.]+)")
OIP = ["--protocol", "oip", "--model-name", "digits", "--model", "digits",
       "--tensor", "input-0:FP64:-1,64"]  # fmt: skip


def _hey(url: str, body: Path, cores: Cores, concurrency: int, seconds: float) -> Row:
    command = ["hey", "-z", f"{seconds:g}s", "-c", str(concurrency), "-m", "POST",
               "-T", "application/json", "-D", str(body), url]  # fmt: skip
    finished = run_child(command, cpus=cores.client)
    match = _RATE.search(finished.stdout)
    if finished.returncode != 0 or match is None:
        raise RuntimeError(f"hey failed: {finished.stderr.strip()[-300:]}")
    rate = float(match.group(1))
    calls = rate * seconds
    return Row(SECTION, "hey (Go)", SERVER, rate_per_s=rate,
               cpu_us_per_request=finished.cpu_s / calls * 1e6 if calls else None,
               note="one fixed body; CPU includes hey's start-up")  # fmt: skip


def measure(cores: Cores, work: Path, *, concurrency: int, seconds: float, pairs: int) -> list[Row]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from targets.learned import export_digits
    from tests.servers.launch import is_built, start

    if shutil.which("hey") is None or not is_built("mlserver"):
        raise RuntimeError("needs hey (apt-get install hey) and `make servers`")
    joblib_path, _ = export_digits(work / "digits")
    body = work / "infer.json"
    row = [float(i % 17) for i in range(64)]
    tensor = {"name": "input-0", "datatype": "FP64", "shape": [1, 64], "data": row}
    body.write_text(json.dumps({"inputs": [tensor]}))
    with start("mlserver", joblib_path, settings={"parallel_workers": 0}) as server:
        if cores.server:
            os.sched_setaffinity(server.pid, cores.server)
        url = f"{server.base_url}/v2/models/digits/infer"
        args = ["--target", "rest", "--url", server.base_url, *OIP, "--concurrency",
                str(concurrency), "--duration", f"{seconds:g}s", "--warmup", "0s"]  # fmt: skip

        def ours() -> Row:
            result, _ = servelab_run(args, out=work / "servers-oip.json", cpus=cores.client)
            return row_from_result(SECTION, "servelab run --protocol oip", SERVER, result)

        def theirs() -> Row:
            return _hey(url, body, cores, concurrency, seconds)

        return abba(ours, theirs, pairs)
