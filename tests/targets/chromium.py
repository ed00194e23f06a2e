"""Headless Chromium for tests: open a page, wait for the done marker it writes, read it.

Chromium speaks the DevTools protocol over ``--remote-debugging-pipe`` (commands on its fd 3,
answers on fd 4, each a JSON message ending in NUL). ``page_marker`` opens a tab, navigates,
waits for the load event, then awaits a promise that resolves when the page has added an element
``#servelab-done`` (a MutationObserver: no polling, no fixed delay) and returns its text. Every
wait is bounded by one deadline; the browser runs in its own process group, ended by its PID.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any, Final

CHROMIUM_NAMES: Final = ("chromium", "chromium-browser", "google-chrome")
DONE_ID: Final = "servelab-done"
AWAIT_DONE: Final = f"""new Promise(resolve => {{
  const done = () => {{
    const marker = document.getElementById("{DONE_ID}");
    if (marker) resolve(marker.textContent);
    return Boolean(marker);
  }};
  if (!done()) new MutationObserver((_, observer) => {{ if (done()) observer.disconnect(); }})
    .observe(document, {{ subtree: true, childList: true }});
}})"""


def chromium_path() -> str | None:
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return None


class DevTools:
    """One DevTools pipe: ``call`` sends a command and returns its result, keeping events."""

    def __init__(self, commands: int, answers: int, deadline: float) -> None:
        self._commands, self._answers, self._deadline = commands, answers, deadline
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._answers], [], [], remaining)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                raise ConnectionError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        decoded: dict[str, Any] = json.loads(message)
        return decoded

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            command["sessionId"] = session
        os.write(self._commands, json.dumps(command).encode() + b"\0")
        while True:
            message = self._read_message()
            if message.get("id") != self._next_id:
                self.events.append(message)
                continue
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            result: dict[str, Any] = message.get("result", {})
            return result

    def wait_event(self, method: str, session: str) -> dict[str, Any]:
        while True:
            for index, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self.events.pop(index)
            self.events.append(self._read_message())


def _above_four(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


@contextlib.contextmanager
def devtools(chromium: str, timeout_s: float) -> Iterator[DevTools]:
    """A headless Chromium on a fresh profile, for at most ``timeout_s``; ended on exit."""
    commands_read, commands_write = os.pipe()
    answers_read, answers_write = os.pipe()
    # The child's ends above fd 4, so moving them onto 3 and 4 cannot clobber one another.
    commands_read, answers_write = (_above_four(fd) for fd in (commands_read, answers_write))
    profile = tempfile.mkdtemp(prefix="servelab-chromium-")
    argv = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank",
    ]  # fmt: skip
    # The protocol's fds are 3 and 4 in the browser: bash moves ours there (dash takes no fd
    # above 9), then execs.
    process = subprocess.Popen(
        ["/bin/bash", "-c", f'exec "$@" 3<&{commands_read} 4>&{answers_write}', "bash", *argv],
        pass_fds=(commands_read, answers_write),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    os.close(commands_read)
    os.close(answers_write)
    try:
        yield DevTools(commands_write, answers_read, time.monotonic() + timeout_s)
    finally:
        with contextlib.suppress(OSError):  # ask it to quit; it may be gone already
            os.write(commands_write, b'{"id": 0, "method": "Browser.close"}\0')
        os.close(commands_write)
        os.close(answers_read)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(ProcessLookupError):  # renderers left in its group, if any
            os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(profile, ignore_errors=True)


def page_marker(chromium: str, url: str, *, timeout_s: float = 60.0) -> str:
    """Open ``url``, wait for its ``#servelab-done`` element, and return that element's text."""
    with devtools(chromium, timeout_s) as tools:
        target = tools.call("Target.createTarget", url="about:blank")["targetId"]
        session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tools.call("Page.enable", session)
        tools.call("Page.navigate", session, url=url)
        tools.wait_event("Page.loadEventFired", session)
        evaluated = tools.call(
            "Runtime.evaluate", session, expression=AWAIT_DONE, awaitPromise=True,
            returnByValue=True,
        )  # fmt: skip
        if "exceptionDetails" in evaluated:
            raise RuntimeError(f"the page failed: {evaluated['exceptionDetails']}")
        text: str = evaluated["result"]["value"]
        return text
