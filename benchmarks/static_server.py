"""A fast static answer server for client benchmarks and client tests: nginx when installed (one
worker, a fixed canonical JSON answer to any method and path, an access log that counts the
requests the server really served), else a small uvloop + httptools server in Python.

    with static_server(workdir, cpus={0}) as server:
        server.url, server.served()  # served() counts access-log lines (None without nginx)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

ANSWER = (
    '{"predictions":[0.5],"metadata":{"transport":"rest","model_name":"static",'
    '"model_version":"0","request_id":"0","api":"v1"}}'
)
READY_S = 15.0

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  log_format counted '$status';
  access_log {access_log} counted;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      default_type application/json;
      return 200 '{answer}';
    }}
  }}
}}
"""


@dataclass
class StaticServer:
    name: str  # "nginx" or "python"
    url: str
    pid: int
    access_log: Path | None

    def served(self) -> int | None:
        """Requests the server logged (one access-log line each, unbuffered)."""
        if self.access_log is None or not self.access_log.exists():
            return None
        with self.access_log.open("rb") as log:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: log.read(1 << 20), b""))


def nginx_path() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.01)  # polling readiness
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def static_server(
    workdir: Path, *, cpus: set[int] | None = None, prefer_nginx: bool = True
) -> Iterator[StaticServer]:
    """Start nginx (or the Python fallback) on a free loopback port; stop it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    binary = nginx_path() if prefer_nginx else None
    for _attempt in range(5):  # nginx cannot bind port 0: a free port may be taken meanwhile
        port = _free_port()
        if binary:
            # on tmpfs where there is one: an access-log write that waits on a disk flush
            # would stall the server mid-benchmark
            logs = Path("/dev/shm") if Path("/dev/shm").is_dir() else workdir
            access_log = logs / f"servelab-access-{os.getpid()}-{port}.log"
            conf = workdir / f"nginx-{port}.conf"
            conf.write_text(
                NGINX_CONF.format(prefix=workdir, port=port, answer=ANSWER, access_log=access_log)
            )
            command = [binary, "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "e.log")]
            name = "nginx"
        else:
            access_log = None
            command = [sys.executable, __file__, str(port)]
            name = "python"
        with (workdir / f"{name}-{port}.out").open("ab") as out:
            process = subprocess.Popen(command, stdout=out, stderr=out)
        if cpus:
            os.sched_setaffinity(process.pid, cpus)
        if _wait_listening(port, process):
            break
        _stop(process)
    else:
        raise RuntimeError(f"{name} did not start; see {workdir}")
    try:
        yield StaticServer(name, f"http://127.0.0.1:{port}", process.pid, access_log)
    finally:
        _stop(process)
        if access_log is not None:
            access_log.unlink(missing_ok=True)


def _serve_python(port: int) -> None:
    """The fallback: keep-alive HTTP/1.1, the same answer to every request."""
    import asyncio

    import httptools
    import uvloop

    response = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(ANSWER)}\r\n\r\n{ANSWER}"
    ).encode()

    class Answer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast("asyncio.Transport", transport)  # a stream server's transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

        def on_message_complete(self) -> None:
            self.transport.write(response)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Answer, "127.0.0.1", port, backlog=4096)
        await server.serve_forever()

    uvloop.run(main())


if __name__ == "__main__":
    _serve_python(int(sys.argv[1]))
