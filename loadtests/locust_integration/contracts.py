"""The users' wire contracts, without gevent: ``--protocol`` and its options (declared from
``loadtests.options.PROTOCOL_OPTIONS``, as on ``servelab run``) become the same contracts the
drivers speak, built once per Locust process: ``RestUser``'s ``HttpContract`` and, for
``--protocol oip``, ``GrpcUser``'s and ``GrpcStreamUser``'s ``OipGrpc`` (``ModelInfer``,
``ModelStreamInfer``).

Before its first request a process prepares each contract as ``servelab run`` does
(``jobs.target_checks.prepare_contract`` / ``prepare_grpc_contract_blocking``): the model must
be ready and its metadata, where the protocol has one, is read (OIP's input tensors,
BentoML's request field). servelab's own contract has neither, so nothing is sent for it — as
before ``--protocol``. What cannot work raises ``LoadOptionError``; the session turns it into
one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from loadtests.errors import LoadOptionError
from loadtests.locust_integration.support import option
from loadtests.protocols.base import HttpContract
from loadtests.protocols.registry import ProtocolOptions, protocol

if TYPE_CHECKING:
    from loadtests.protocols.oip_grpc import OipGrpc

SERVELAB: Final = "servelab"
# The servelab users with a wire contract (by ``servelab_target``); "locust" is a user class
# of your own, which speaks whatever it speaks.
SPEAKERS: Final = frozenset({"rest"})
GRPC_SPEAKERS: Final = frozenset({"grpc", "grpc-stream"})
YOURS: Final = frozenset({"locust"})


def protocol_name(options: object) -> str:
    return str(option(options, "protocol", SERVELAB))


def protocol_options(options: object) -> ProtocolOptions:
    """The protocol options as Locust parsed them (plain strings and lists of strings)."""
    return ProtocolOptions(
        model_name=option(options, "model_name"),
        model_version=option(options, "model_version"),
        tensors=tuple(option(options, "tensor", ())),
        headers=tuple(option(options, "header", ())),
        template=option(options, "request_template"),
        bentoml_api=str(option(options, "bentoml_api", "predict")),
        raw_tensors=bool(option(options, "raw_tensors", False)),
    )


def build_contract(options: object) -> HttpContract:
    """The contract ``--protocol`` names, unprepared; ``LoadOptionError`` for options it
    refuses (no ``--model-name``, a bad ``--header`` or template)."""
    return protocol(protocol_name(options)).http(protocol_options(options))


def protocol_refusal(options: object, users: Mapping[str, str]) -> str | None:
    """Why ``--protocol`` and its options cannot work for ``users`` (class name → servelab
    target), in one line (``None``: they can). A protocol is spoken by the users of the targets
    it goes with (``oip``: RestUser, GrpcUser, GrpcStreamUser; the others: RestUser)."""
    name = protocol_name(options)
    try:
        build_contract(options)
        build_grpc_contract(options)
    except LoadOptionError as exc:
        return str(exc)
    spoken = protocol(name).targets
    others = sorted(
        user
        for user, target in users.items()
        if spoken is not None and target not in spoken | YOURS
    )
    if others:
        return (
            f"--protocol {name} is not spoken by {', '.join(others)} (it goes with "
            f"--target {' or '.join(sorted(spoken or ()))})"
        )
    return None


def build_grpc_contract(options: object) -> OipGrpc | None:
    """The gRPC contract ``--protocol`` names, unprepared (``None``: servelab's own
    ``Predictor``)."""
    grpc = protocol(protocol_name(options)).grpc
    return grpc(protocol_options(options)) if grpc is not None else None


def prepared_grpc_contract(options: object, address: str) -> OipGrpc | None:
    """The gRPC contract, ready for load against ``address`` (``ModelReady`` said ready,
    ``ModelMetadata`` read); ``LoadOptionError`` in one line when it is not usable."""
    contract = build_grpc_contract(options)
    if contract is None:
        return None
    from loadtests.jobs.target_checks import prepare_grpc_contract_blocking

    return prepare_grpc_contract_blocking(address, contract)


def prepared_contract(options: object, host: str) -> HttpContract:
    """The contract, ready for load against ``host`` (readiness checked, metadata read);
    ``LoadOptionError`` (``TargetUnusable``) in one line when the target is not usable."""
    contract = build_contract(options)
    if contract.ready_path is None and contract.metadata_path is None:
        return contract  # nothing to ask (servelab's own contract): no loop, no request
    from loadtests.engine.loop import run
    from loadtests.jobs.target_checks import prepare_contract

    # A blocking call, before any user starts: the process has nothing else to do yet.
    return run(prepare_contract(host, contract))
