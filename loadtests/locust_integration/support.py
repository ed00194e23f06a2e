"""What one Locust request is, without gevent: servelab's Locust options, the seeded workload, and
the verdict on each answer — so ``loadtests/locustfile.py`` (the one module that imports gevent)
only times calls and fires events, and everything here is testable in a plain process.

An answer becomes the drivers' ``Reply`` (outcome, error class, predictions, schema_ok) with the
same rules ``servelab run`` applies (``drivers.base.judge_answer``): a 200 whose body misses the
canonical contract is a ``schema`` failure; a deliberately invalid payload answered 4xx /
INVALID_ARGUMENT is an expected rejection. Users hand the reply to the request listener through
the event's ``context`` (``REPLY_KEY``), with the exact latency in ns (``LATENCY_NS_KEY``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Final

from loadtests.drivers.base import Reply
from loadtests.engine.workload import Payload, PayloadGenerator, PayloadSpec, derive_seeds
from loadtests.errors import LoadOptionError
from loadtests.locust_integration.shape_plans import ArrivalPlan, ShapePlan, parse_shape
from loadtests.options import (
    INSTANCES,
    POSITIVE_DURATION,
    POSITIVE_INT,
    SEED,
    add_payload_options,
    add_protocol_table,
)
from loadtests.protocols.base import HttpContract, HttpRequest
from loadtests.results.gates import DEFAULT_GATE
from loadtests.results.thresholds import ThresholdError, parse_threshold

if TYPE_CHECKING:
    from loadtests.protocols.oip_grpc import OipGrpc
    from targets.rpc import predict_pb2 as pb

REPLY_KEY: Final = "servelab_reply"
LATENCY_NS_KEY: Final = "servelab_latency_ns"
REQUEST_TIMEOUT_S: Final = 30.0  # as `servelab run --timeout`'s default


# -- options ------------------------------------------------------------------------------------


def threshold_option(text: str) -> str:
    """argparse type: a valid absolute threshold, kept as text (Locust ships options to workers
    as msgpack, so parsed objects cannot travel)."""
    try:
        parse_threshold(text, allow_relative=False)
    except ThresholdError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def flaky_link_option(text: str) -> str:
    """argparse type: a valid ``--flaky-link`` profile, kept as text (as ``threshold_option``)."""
    from targets.edge.link import parse_link_profile

    try:
        parse_link_profile(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def shape_option(text: str) -> str:
    try:
        parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_arguments(parser: Any) -> None:
    """servelab's options on Locust's parser (``init_command_line_parser``). Every value stays a
    plain str/int/float/bool/list, so the master can send them to workers."""
    web_ui = hasattr(parser, "args_included_in_web_ui")  # Locust's parser, not plain argparse

    def add(*names: str, shown: bool = True, **kwargs: Any) -> None:
        if web_ui:
            kwargs["include_in_web_ui"] = shown
        parser.add_argument(*names, **kwargs)

    add("--seed", type=SEED, default=42, help="servelab: workload seed (payloads)")
    add_payload_options(
        add, help_prefix="servelab: ", as_text=True
    )  # as `servelab run` declares them
    # RestUser's wire contract, as `servelab run` declares it; fixed for the process (each
    # process prepares it once), so not offered in the web UI
    add_protocol_table(
        lambda *names, **kwargs: add(*names, shown=False, **kwargs), help_prefix="servelab: "
    )
    add("--model", default=None, metavar="SPEC",
        help="servelab: model of BatchUser/EdgeUser (default reference), recorded as run.model; "
        "a --host servelab did not start records no model unless named")  # fmt: skip
    add("--batch-size", type=POSITIVE_INT, default=256, metavar="N",
        help="servelab: rows per BatchUser job")  # fmt: skip
    add("--grpc-host", default=None, metavar="HOST:PORT",
        help="servelab: gRPC target of GrpcUser/GrpcStreamUser (default: --host)")  # fmt: skip
    add("--request-timeout", type=POSITIVE_DURATION, default=REQUEST_TIMEOUT_S, metavar="D",
        help="servelab: per-request timeout of every servelab user, e.g. 2s")  # fmt: skip
    add("--allow-remote", action="store_true", default=False,
        help="servelab: allow a target that is not a loopback address")  # fmt: skip
    add("--result", default=None, metavar="FILE", shown=False,
        help="servelab: result file (default results/locust-<timestamp>.json)")  # fmt: skip
    add("--threshold", type=threshold_option, action="append", default=None, metavar="EXPR",
        shown=False, help="servelab: CI gate, e.g. 'p99<50ms' (repeatable); the default gate "
        f"{DEFAULT_GATE} stays unless you name success_rate/fail_ratio")  # fmt: skip
    add("--no-default-gate", action="store_true", default=False, shown=False,
        help=f"servelab: drop the default gate ({DEFAULT_GATE})")  # fmt: skip
    add("--allow-invalid", action="store_true", default=False, shown=False,
        help="servelab: exit by the gates even when the run is INVALID (else 3)")  # fmt: skip
    add("--label", default=None, metavar="TEXT", help="servelab: free text naming the run")
    add("--flaky-link", type=flaky_link_option, nargs="?", const="default", default=None,
        metavar="PROFILE", shown=False,
        help="servelab: EdgeUser reaches --host through a fault proxy: 'default' (down 2 s of "
        "every 5, 10%% resets, +50 ms) or changes to it, e.g. down=1s/4s")  # fmt: skip
    add("--shape", type=shape_option, default=None, metavar="SPEC", shown=False,
        help="servelab: load shape (add loadtests/locust_integration/shapes.py to -f): "
        "ramp:0:50:30s")  # fmt: skip


def option(options: object, name: str, default: Any = None) -> Any:
    """An option's value; the default when Locust runs without parsed options (as a library)."""
    value = getattr(options, name, None)
    return default if value is None else value


def request_timeout_s(options: object) -> float:
    """``--request-timeout`` in seconds (``REQUEST_TIMEOUT_S`` when Locust runs as a library)."""
    return float(option(options, "request_timeout", REQUEST_TIMEOUT_S))


def grpc_address(options: object, host: str | None) -> str:
    """``HOST:PORT`` for gRPC users: ``--grpc-host``, else ``--host`` (``grpc://`` optional)."""
    target = option(options, "grpc_host") or host
    if not target:
        raise LoadOptionError("gRPC users need --grpc-host HOST:PORT (or --host grpc://HOST:PORT)")
    address = str(target).removeprefix("grpc://").rstrip("/")
    if "://" in address:
        raise LoadOptionError(f"gRPC target {target!r} must be HOST:PORT or grpc://HOST:PORT")
    return address


# -- the workload of one process ----------------------------------------------------------------


def payload_spec(options: object, row_width: int | None = None) -> PayloadSpec:
    """The payloads the options name, built as ``servelab run`` builds them (the defaults when
    Locust runs as a library, without parsed options). ``row_width``: the values a row must
    have, when the contract fixes it (an OIP tensor's shape), over ``--instances``."""
    given = str(option(options, "instances", "8"))
    instances = (row_width, None) if row_width else INSTANCES(given)
    return PayloadSpec.from_options(
        api=str(option(options, "api", "v1")),
        instances=instances,
        rows_per_request=int(option(options, "rows_per_request", 1)),
        invalid_fraction=float(option(options, "invalid_fraction", 0.0)),
        distinct=int(option(options, "distinct", 4096)),
        data=option(options, "data"),
    )


class Workload:
    """This process's payloads: the seeded generator of ``servelab run`` and a cursor over it.

    Request ``i`` of a process carries payload ``i`` (every process walks the same sequence; the
    seed fixes which payloads exist and in what order). Encodings are made once per distinct
    payload — the pool is cycled, so after the first lap no request pays for them.
    """

    def __init__(self, options: object, row_width: int | None = None) -> None:
        self.spec = payload_spec(options, row_width)
        self.generator = PayloadGenerator(
            self.spec, derive_seeds(int(option(options, "seed", 42)))[0]
        )
        self._next = 0
        self._requests: dict[int, tuple[Payload, HttpRequest]] = {}
        self._infer_requests: dict[int, tuple[Payload, bytes]] = {}
        self._messages: Any = None

    def next_payload(self) -> Payload:
        index = self._next
        self._next = index + 1
        return self.generator.payload(index)

    def request(self, payload: Payload, contract: HttpContract) -> HttpRequest:
        """The payload as ``contract``'s HTTP request, encoded once per distinct payload (the
        entry holds the payload, so its id stays unique; one contract per process)."""
        entry = self._requests.get(id(payload))
        if entry is None or entry[0] is not payload:
            entry = self._requests[id(payload)] = (payload, contract.request(payload))
        return entry[1]

    def infer_request(self, payload: Payload, contract: OipGrpc) -> bytes:
        """The payload as ``contract``'s serialized ``ModelInferRequest``, once per distinct
        payload (one contract per process)."""
        entry = self._infer_requests.get(id(payload))
        if entry is None or entry[0] is not payload:
            entry = self._infer_requests[id(payload)] = (payload, contract.request_bytes(payload))
        return entry[1]

    def message(self, payload: Payload) -> tuple[pb.PredictRequest, int]:
        """The payload as a ``PredictRequest`` and its size (the gRPC drivers' converter)."""
        if self._messages is None:
            from loadtests.drivers.grpc import MessageCache

            self._messages = MessageCache()
        message, size = self._messages.get(payload)
        return message, size


def request_name(base: str, payload: Payload) -> str:
    """Locust's stats name: invalid payloads apart, so Locust's own table does not mix the
    latencies of rejections with answers (servelab's recorder keeps them apart too)."""
    return base if payload.valid else f"{base} [invalid]"


# -- verdicts on answers --------------------------------------------------------------------------


def judge_rpc_error(payload: Payload, error: Exception) -> Reply:
    """A blocking gRPC call that raised: its status code by the drivers' one mapping
    (INVALID_ARGUMENT for an invalid payload is an expected rejection)."""
    import grpc

    from loadtests.drivers.grpc import reply_for_status

    code = error.code() if isinstance(error, grpc.RpcError) and hasattr(error, "code") else None
    if isinstance(code, grpc.StatusCode):
        return reply_for_status(payload, code)
    return Reply.failure(f"client_{type(error).__name__}")


# -- pacing (the constant-arrival-rate shape) ---------------------------------------------------


def pacing_period_s(plan: ShapePlan | None) -> float:
    """Seconds between task starts of one user under a constant-arrival-rate shape (0: none).

    ``RATE`` requests/s over ``USERS`` users: each user starts a task every ``USERS / RATE`` s.
    A closed loop keeps that pace only while answers take less than the period.
    """
    if not isinstance(plan, ArrivalPlan):
        return 0.0
    return plan.users / plan.rate_per_s


def pacing_wait_s(period_s: float, last_start_s: float | None, now_s: float) -> float:
    """How long a user waits before its next task to keep one start per ``period_s``."""
    if period_s <= 0 or last_start_s is None:
        return 0.0
    return max(0.0, period_s - (now_s - last_start_s))
