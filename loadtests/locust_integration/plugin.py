"""servelab's options and result recording on Locust, without servelab's users: load it beside a
locustfile of your own and its requests get servelab's exact recorder, result file (``--result``)
and gates (``--threshold``)::

    locust -f my_locustfile.py,loadtests/locust_integration/plugin.py --headless -u 4 -t 10s \\
        --host http://127.0.0.1:8000 --threshold 'p99<50ms' --result r.json

``servelab locust -f my_locustfile.py`` adds it for you. ``loadtests/locustfile.py`` (servelab's
users) imports it too, so either file brings the same listeners. Requests of your users are timed
by Locust (its ``response_time``) and judged by its verdict (``exception`` or not).

**Registered once.** Locust loads ``-f`` files by path, as modules named after the file, and a
user's locustfile may import servelab's by its package name; the listeners register only in the
package module (``loadtests.locust_integration.plugin``), however many ways this file is
reached — twice, they would add servelab's options to Locust's parser twice and fail.

**Module state.** Locust's model is global: listeners register on ``locust.events`` and users
reach per-process state only through their ``Environment``. So this module keeps exactly one
registry, ``_SESSIONS`` (Environment → ``Session``); the session's own bound methods are the
listeners, registered when Locust fires ``init``. Like the locustfile, it imports gevent: it is a
Locust file, never imported by servelab's packages.
"""

from __future__ import annotations

import importlib
import sys
import time
import weakref
from typing import Any, Final

import gevent  # type: ignore[import-untyped]
from locust import events
from locust.env import Environment
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner

from loadtests.locust_integration.session import Role, Session
from loadtests.locust_integration.support import add_arguments

_SESSIONS: weakref.WeakKeyDictionary[Environment, Session] = weakref.WeakKeyDictionary()


FINAL_REPORT_WAIT_S: Final = 10.0  # the most the master waits for its workers' last reports
FINAL_REPORT_POLL_S: Final = 0.05


def session_of(environment: Environment) -> Session:
    session = _SESSIONS.get(environment)
    if session is None:
        raise RuntimeError("servelab's locust plugin was not initialised (Locust's init event)")
    return session


def _add_servelab_arguments(parser: Any, **_kwargs: Any) -> None:
    add_arguments(parser)


def _start_session(environment: Environment, **_kwargs: Any) -> None:
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()  # before any channel; after Locust's --processes fork
    runner = environment.runner
    role: Role = (
        "master" if isinstance(runner, MasterRunner)
        else "worker" if isinstance(runner, WorkerRunner) else "local"
    )  # fmt: skip
    session = Session(environment, role)
    _SESSIONS[environment] = session
    session.register()
    if isinstance(runner, MasterRunner):
        environment.events.test_stop.add_listener(  # type: ignore[no-untyped-call]
            lambda **_: _collect_final_reports(runner, session)
        )
    if session.role != "worker":
        # a worker prepares RestUser's contract at test start, once the master's options are in
        problem = session.configuration_error() or session.prepare_contract()
        if problem:  # before any load: one line, exit 2 (as servelab's own commands)
            print(f"servelab: {problem}", file=sys.stderr)
            sys.exit(2)
    # Locust arms --run-time (gevent.spawn_later) right after init, from the loop's cached
    # clock — as old as the loop: 0.3 s idle, seconds on a busy box, cutting short runs short.
    gevent.get_hub().loop.update_now()


def _collect_final_reports(runner: MasterRunner, session: Session) -> None:
    """On the master, at ``test_stop``: make sure every worker's last snapshot arrives.

    Locust's ``quit`` fires ``test_stop`` *before* it tells the workers anything, then gives
    them half a second before it stops listening — which a busy machine overruns, and the run
    was INVALID for missing reports. So the master tells each worker to stop (a worker sends
    its final report when it stops) and waits for those reports, polling, bounded."""
    if session.collection.all_final():
        return
    for client in runner.clients.all:
        runner.server.send_to_client(Message("stop", None, client.id))  # type: ignore[no-untyped-call]
    deadline = time.monotonic() + FINAL_REPORT_WAIT_S
    while not session.collection.all_final() and time.monotonic() < deadline:
        gevent.sleep(FINAL_REPORT_POLL_S)


if __name__ == "loadtests.locust_integration.plugin":
    # Locust's EventHook.add_listener is untyped.
    events.init_command_line_parser.add_listener(_add_servelab_arguments)  # type: ignore[no-untyped-call]
    events.init.add_listener(_start_session)  # type: ignore[no-untyped-call]
else:  # loaded by path (``-f``): register through the package module, once
    importlib.import_module("loadtests.locust_integration.plugin")
