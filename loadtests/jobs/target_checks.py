"""A target is checked before the clock starts: measuring a down server is not a benchmark.

``check_target_options`` refuses, in one line, a target the options cannot describe: a URL
without ``http(s)://``, ``--url`` given to a gRPC target or ``--address`` to a REST one, a URL
that already ends in a predict route, a ``--target-pid`` that is not running. ``probe`` then
sends one valid request in the run's protocol, capped at ``PROBE_TIMEOUT_S``: a target that
refuses connections, answers 404 on the predict path or speaks another protocol is refused with
what was seen. Both raise ``TargetUnusable`` (exit 2). The edge target is not probed: its
remote may be down on purpose.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import orjson

from loadtests.drivers.base import Driver
from loadtests.drivers.http_errors import http_error_class
from loadtests.drivers.registry import target
from loadtests.engine.records import Outcome
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError
from loadtests.protocols.base import HttpContract
from loadtests.protocols.oip_grpc import SERVICE

if TYPE_CHECKING:
    from ssl import SSLContext

    import grpc

    from loadtests.protocols.oip_grpc import OipGrpc

PROBE_TIMEOUT_S: Final = 5.0
PREDICT_ROUTES: Final = ("/v1/predict", "/v2/predict", "/infer", ":predict")

# What a failed probe saw, by error class; classes not here (5xx, model errors) mean the
# target is up and answering: the run measures them.
_SEEN: Final = {
    "connect": "nothing is listening there (connection refused)",
    "timeout": f"no answer within {PROBE_TIMEOUT_S:g} s",
    "http_404": "it answered HTTP 404 on the predict route: not a servelab target, or --url "
    "is not the base URL",
    "http_405": "it answered HTTP 405 on the predict route: another protocol",
    "http_415": "it answered HTTP 415: another protocol",
    "schema": "it answered, but not in servelab's contract: another protocol",
    "rejected": "it refused a valid request: another protocol or contract",
    "unavailable": "nothing answering gRPC there (UNAVAILABLE)",
    "unimplemented": "it does not serve servelab's Predictor service (UNIMPLEMENTED)",
    "reset": "the connection was reset: does it speak plain HTTP/1.1 (https vs http)?",
    "disconnected": "it closed the connection without answering: another protocol, or https "
    "vs http?",
    "protocol": "its answer is not HTTP/1.1: another protocol, or https vs http?",
}


class TargetUnusable(LoadOptionError):
    """The target cannot be measured as given; the message is one line saying what was seen."""


def check_target_options(
    name: str, *, url: str | None, address: str | None, target_pid: int | None
) -> None:
    """Refuse options that cannot describe target ``name`` (see the module docstring)."""
    spec = target(name)
    if url is not None:
        if spec.takes("address"):
            raise TargetUnusable(
                f"--url {url!r}: --target {name} speaks gRPC; give --address HOST:PORT"
            )
        if not spec.takes("url"):
            raise TargetUnusable(f"--url {url!r}: --target {name} runs in this process")
        check_base_url(url, option="--url")
    if address is not None:
        if spec.takes("url"):
            raise TargetUnusable(
                f"--address {address!r}: --target {name} speaks HTTP; give --url http://..."
            )
        if not spec.takes("address"):
            raise TargetUnusable(f"--address {address!r}: --target {name} runs in this process")
        if "://" in address:
            raise TargetUnusable(f"--address {address!r}: give HOST:PORT, without a scheme")
    if target_pid is not None and not _alive(target_pid):
        raise TargetUnusable(f"--target-pid {target_pid}: no such process")


def check_base_url(url: str, *, option: str, schemes: tuple[str, ...] = ("http", "https")) -> None:
    """A base URL: one of ``schemes`` and a host, and no predict route already on its path."""
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.netloc:
        wanted = " or ".join(f"{scheme}://" for scheme in schemes)
        raise TargetUnusable(f"{option} {url!r}: needs {wanted} and a host")
    path = parts.path.rstrip("/")
    for route in PREDICT_ROUTES:
        if path.endswith(route):
            raise TargetUnusable(
                f"{option} {url!r} already ends in {route}: give the base URL "
                f"({parts.scheme}://{parts.netloc}{path.removesuffix(route)}); the route "
                "comes from --api"
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


async def probe(where: str, new_driver: Callable[[], Driver], payload: Payload) -> None:
    """One valid request to ``where`` through a driver of its own (the run's counts and
    connections stay untouched); ``TargetUnusable`` when the answer shows the target is not
    there or speaks another protocol."""
    driver = new_driver()
    try:
        await asyncio.wait_for(driver.open(), PROBE_TIMEOUT_S)
        outcome, error_class, _, _ = await asyncio.wait_for(driver.send(payload), PROBE_TIMEOUT_S)
    except TimeoutError:
        outcome, error_class = Outcome.FAILURE, "timeout"
    finally:
        await driver.close()
    if outcome == Outcome.OK or error_class is None:
        return
    seen = _SEEN.get(error_class)
    if seen is None and error_class.startswith("io_"):
        seen = f"the connection failed ({error_class}): another protocol, or https vs http?"
    if seen is not None:
        raise TargetUnusable(f"{where}: probe request failed: {seen}")


async def prepare_contract(
    base_url: str, contract: HttpContract, ssl: SSLContext | None = None
) -> HttpContract:
    """Before the clock starts: the contract's readiness URL must answer 200 (a model that
    failed to load is refused, not measured), and its metadata route, where it has one, is
    read (``contract.describe``: OIP's inputs, BentoML's request field)."""
    import aiohttp

    base = base_url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
    headers = dict(contract.headers)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        for path, needed in ((contract.ready_path, True), (contract.metadata_path, False)):
            if path is None:
                continue
            try:
                async with session.get(base + path, ssl=ssl if ssl else True) as answer:
                    status, body = answer.status, await answer.read()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise TargetUnusable(f"{base}{path}: {http_error_class(exc)}") from None
            if status != 200:
                if needed:
                    raise TargetUnusable(
                        f"{base}{path} answered HTTP {status}: the {contract.name} target is not "
                        "ready (a wrong --model-name, or a model that did not load?)"
                    )
                continue
            if path == contract.metadata_path:
                contract.describe(_json_object(body, base + path))
    return contract


def _json_object(body: bytes, where: str) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise TargetUnusable(f"{where}: the metadata is not JSON") from None
    if not isinstance(document, dict):
        raise TargetUnusable(f"{where}: the metadata is not a JSON object")
    return document


async def prepare_grpc_contract(
    address: str, contract: OipGrpc, credentials: grpc.ChannelCredentials | None = None
) -> OipGrpc:
    """``prepare_contract`` over gRPC: ``ModelReady`` must say ready, then ``ModelMetadata``
    describes the model (an error from it leaves ``--tensor`` to say the inputs)."""
    import grpc

    channel = (
        grpc.aio.insecure_channel(address)
        if credentials is None
        else grpc.aio.secure_channel(address, credentials)
    )
    async with channel:
        ready, described = _oip_calls(channel, contract)
        try:
            answer = await ready()
        except grpc.aio.AioRpcError as exc:
            raise _ready_failed(address, exc) from None
        try:
            found = await described()
        except grpc.aio.AioRpcError:
            found = None
    return _prepared(address, contract, answer, found)


def prepare_grpc_contract_blocking(address: str, contract: OipGrpc) -> OipGrpc:
    """``prepare_grpc_contract`` on a blocking channel (Locust's gRPC users, under gevent)."""
    import grpc

    with grpc.insecure_channel(address) as channel:
        ready, described = _oip_calls(channel, contract)
        try:
            answer = ready()
        except grpc.RpcError as exc:
            raise _ready_failed(address, exc) from None
        try:
            found = described()
        except grpc.RpcError:
            found = None
    return _prepared(address, contract, answer, found)


def _oip_calls(channel: Any, contract: OipGrpc) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """``ModelReady`` and ``ModelMetadata`` for ``contract``'s model on ``channel`` (aio or
    blocking: the calls return an awaitable or the answer)."""
    from functools import partial

    from targets.rpc import inference_pb2 as pb

    metadata = tuple((key.lower(), value) for key, value in contract.metadata) or None
    model_ready = channel.unary_unary(
        f"/{SERVICE}/ModelReady", request_serializer=pb.ModelReadyRequest.SerializeToString,
        response_deserializer=pb.ModelReadyResponse.FromString,
    )  # fmt: skip
    model_metadata = channel.unary_unary(
        f"/{SERVICE}/ModelMetadata",
        request_serializer=pb.ModelMetadataRequest.SerializeToString,
        response_deserializer=pb.ModelMetadataResponse.FromString,
    )
    ask = {"timeout": PROBE_TIMEOUT_S, "metadata": metadata}
    return (
        partial(model_ready, contract.ready_request(), **ask),
        partial(model_metadata, contract.metadata_request(), **ask),
    )


def _ready_failed(address: str, error: Any) -> TargetUnusable:
    return TargetUnusable(
        f"{address}: ModelReady failed: {error.code().name} {error.details() or ''}".strip()
    )


def _prepared(address: str, contract: OipGrpc, ready: Any, described: Any) -> OipGrpc:
    """The contract, once ``ModelReady`` said ``ready`` and ``ModelMetadata`` answered
    ``described`` (``None``: it failed, so ``--tensor`` must name the inputs)."""
    if not ready.ready:
        raise TargetUnusable(
            f"{address}: model {contract.model_name!r} is not ready (a wrong --model-name, "
            "or a model that did not load?)"
        )
    if described is not None:
        contract.describe(described)
    elif not contract.tensors:
        raise TargetUnusable(f"{address}: no ModelMetadata; give the inputs with --tensor")
    return contract
