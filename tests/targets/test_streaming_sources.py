"""Streaming sources and the ``servelab stream`` command: files, followed files, stdin/stdout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from loadtests.cli import app as cli
from targets.batching import BatchingConfig
from targets.models import ReferenceModel
from targets.streaming import LineSource, StreamConsumer
from tests.conftest import ServelabCli

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_TIMEOUT_S = 20.0


async def poll(condition: Callable[[], bool], what: str) -> None:
    """Await real progress (the source polls on real time), bounded by a generous deadline."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.002)


def poll_sync(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, stderr = process.communicate()
            pytest.fail(f"never happened: {what}\n{stderr.decode()}")
        time.sleep(0.005)


async def collect(source: LineSource) -> list[bytes]:
    return [line async for line in source]


class ListSink:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    async def __call__(self, body: dict[str, Any]) -> None:
        self.lines.append(body)


async def test_a_file_is_read_to_its_end_in_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\n   \n{"b": 22}\n{"c": 333}')  # CRLF, blanks, no final newline
    with path.open("rb") as handle:
        source = LineSource(handle.fileno(), chunk_bytes=3)  # lines straddle many chunks
        lines = await collect(source)
    assert [json.loads(line) for line in lines] == [{"a": 1}, {"b": 22}, {"c": 333}]
    assert (source.lines, source.bytes_read) == (3, path.stat().st_size)


async def test_a_pipe_is_read_in_a_thread_without_blocking_the_loop() -> None:
    read_fd, write_fd = os.pipe()
    loop_turns = 0

    async def count_turns() -> None:
        nonlocal loop_turns
        while True:
            loop_turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_turns())
    reading = asyncio.create_task(collect(LineSource(read_fd, in_thread=True)))
    await poll(lambda: loop_turns > 10, "the loop turns while the pipe is empty")
    assert not reading.done()

    def write_and_close() -> None:
        os.write(write_fd, b"one\ntwo\n")
        os.close(write_fd)

    writer = threading.Thread(target=write_and_close)
    writer.start()
    lines = await asyncio.wait_for(reading, timeout=POLL_TIMEOUT_S)
    writer.join()
    counter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await counter
    os.close(read_fd)
    assert lines == [b"one", b"two"]


async def test_following_a_growing_file_until_it_goes_quiet(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"instances": [1]}\n{"instances": [2]}\n')
    sink = ListSink()
    consumer = StreamConsumer(ReferenceModel(), config=BatchingConfig(window_s=0.001))
    with path.open("rb") as handle, path.open("ab") as appender:
        source = LineSource(handle.fileno(), follow=True, idle_exit_s=1.0, poll_s=0.005)
        running = asyncio.create_task(consumer.run(source, sink))
        await poll(lambda: len(sink.lines) == 2, "the first two events answered")

        appender.write(b'{"instan')  # half a line: not an event yet
        appender.flush()
        await poll(lambda: source.bytes_read == path.stat().st_size, "the half line read")
        assert len(sink.lines) == 2
        appender.write(b'ces": [3, 5]}\n')
        appender.flush()
        await poll(lambda: len(sink.lines) == 3, "the joined line answered")

        appender.write(b'{"instances": [4]}\n{"instances": [5]}')  # the last without a newline
        appender.flush()
        report = await asyncio.wait_for(running, timeout=POLL_TIMEOUT_S)  # ends on idle

    assert [line["predictions"] for line in sink.lines] == [[0.9], [1.7], [3.3], [3.3], [4.1]]
    assert [line["metadata"]["event"] for line in sink.lines] == [1, 2, 3, 4, 5]
    assert (report.events, report.bad) == (5, 0)


def test_cli_streams_stdin_to_stdout(servelab_cli: ServelabCli) -> None:
    events = [json.dumps({"instances": [i, i + 1]}) for i in range(6)]
    events.insert(3, "{oops")
    events.append(json.dumps({"rows": [[1], [3]]}))

    finished = servelab_cli(
        "stream", "--batch-size", "3", "--window-ms", "5",
        input="\n".join(events), cwd=REPO_ROOT, timeout=60,
    )  # fmt: skip

    assert finished.returncode == 0, finished.stderr
    lines = [json.loads(line) for line in finished.stdout.splitlines()]
    assert [line.get("event") or line["metadata"]["event"] for line in lines] == list(range(1, 9))
    assert lines[3]["error"]["code"] == "malformed_request"
    assert lines[0]["predictions"] == [0.5]
    assert lines[7]["predictions"] == [0.9, 2.5]
    stderr = finished.stderr
    assert "stream: 8 events, 1 bad, 0 failed" in stderr
    assert "mean" in stderr
    assert "p50" in stderr
    assert "p99" in stderr


def test_cli_follows_a_file_and_flushes_each_line(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"")
    command = servelab_cli.argv("stream", "--input", str(source))
    command += ["--out", str(output), "--follow", "--idle-exit-s", "1.5", "--window-ms", "1"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.PIPE)

    def output_lines() -> list[str]:
        return output.read_text().splitlines() if output.exists() else []

    def has_lines(count: int) -> bool:
        return len(output_lines()) == count

    with source.open("ab") as appender:
        for count, value in enumerate((1, 2, 3), start=1):
            appender.write(json.dumps({"instances": [value]}).encode() + b"\n")
            appender.flush()
            poll_sync(partial(has_lines, count), f"{count} output lines", process)
    _, stderr = process.communicate(timeout=60)  # exits once the file stays quiet

    assert process.returncode == 0
    assert [json.loads(line)["predictions"] for line in output_lines()] == [[0.9], [1.7], [2.5]]
    assert "stream: 3 events" in stderr.decode()


def test_cli_model_failure_is_flagged_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"instances": [1]}\n')
    model = "tests.targets.sample_models:ExplodingModel"

    code = cli.main(["stream", "--input", str(source), "--out", str(output), "--model", model])

    assert code == 1
    assert json.loads(output.read_text())["error"]["code"] == "model_error"
    assert "1 failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "no-such-file.jsonl"], "no-such-file.jsonl"),
        (["--follow"], "--follow needs --input FILE"),
        (["--input", "{input}", "--idle-exit-s", "0"], "--idle-exit-s"),
        (["--input", "{input}", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_cli_bad_options_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("")
    output = tmp_path / "out.jsonl"
    argv = [arg.format(input=source) for arg in args]

    code = cli.main(["stream", *argv, "--out", str(output)])

    assert code == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1
    assert message in stderr
    assert not output.exists()
