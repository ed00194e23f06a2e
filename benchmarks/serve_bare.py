"""Serve one of the bare baseline apps on a free loopback port; writes a ready file like the target.

python benchmarks/serve_bare.py {raw,pydantic} --ready-file FILE
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bare_apps import pydantic_app, raw_app
from targets.files import write_ready_file
from targets.rest.server import bind_socket


async def _serve(server: uvicorn.Server, ready_file: str) -> None:
    sock = bind_socket("127.0.0.1", 0)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.005)
    port = sock.getsockname()[1]
    write_ready_file(ready_file, {"url": f"http://127.0.0.1:{port}", "port": port})
    await task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["raw", "pydantic"])
    parser.add_argument("--ready-file", required=True)
    options = parser.parse_args()
    app = raw_app() if options.kind == "raw" else pydantic_app()
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False)
    server = uvicorn.Server(config)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(_serve(server, options.ready_file))


if __name__ == "__main__":
    main()
