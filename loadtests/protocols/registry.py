"""Every wire contract ``--protocol`` names, in one table: which targets it goes with and how
its contract is built from the protocol options. Adding a protocol is one entry here plus its
module (README: "Adding a target (or a protocol)")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from loadtests.errors import LoadOptionError
from loadtests.protocols.base import HttpContract, parse_headers
from loadtests.protocols.tensors import TensorSpec

if TYPE_CHECKING:
    from loadtests.protocols.oip_grpc import OipGrpc


@dataclass(frozen=True, slots=True)
class ProtocolOptions:
    """What the protocol options of ``run``/``sweep``/a bench cell said."""

    model_name: str | None = None
    model_version: str | None = None
    tensors: tuple[str, ...] = ()  # --tensor NAME:DATATYPE:SHAPE
    headers: tuple[str, ...] = ()  # --header NAME:VALUE
    template: str | None = None  # --request-template FILE
    bentoml_api: str = "predict"
    raw_tensors: bool = False  # OIP gRPC: raw_input_contents instead of typed contents

    def tensor_specs(self) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec.parse(text) for text in self.tensors)


def _servelab(options: ProtocolOptions) -> HttpContract:
    from loadtests.protocols.servelab import ServelabHttp

    return ServelabHttp(headers=parse_headers(options.headers))


def _oip(options: ProtocolOptions) -> HttpContract:
    from loadtests.protocols.oip import OipHttp

    return OipHttp(
        headers=parse_headers(options.headers),
        model_name=options.model_name or "",
        model_version=options.model_version,
        tensors=options.tensor_specs(),
    )


def _kserve_v1(options: ProtocolOptions) -> HttpContract:
    from loadtests.protocols.kserve_v1 import KServeV1

    return KServeV1(headers=parse_headers(options.headers), model_name=options.model_name or "")


def _bentoml(options: ProtocolOptions) -> HttpContract:
    from loadtests.protocols.bentoml import BentoML

    return BentoML(headers=parse_headers(options.headers), api=options.bentoml_api)


def _template(options: ProtocolOptions) -> HttpContract:
    from loadtests.protocols.template import Template

    if not options.template:
        raise LoadOptionError("--protocol template needs --request-template FILE")
    return Template.load(options.template, parse_headers(options.headers))


def _oip_grpc(options: ProtocolOptions) -> OipGrpc:
    from loadtests.protocols.oip_grpc import OipGrpc

    return OipGrpc(
        model_name=options.model_name or "",
        model_version=options.model_version,
        tensors=options.tensor_specs(),
        raw=options.raw_tensors,
        metadata=parse_headers(options.headers),
    )


@dataclass(frozen=True, slots=True)
class Protocol:
    """One contract: the targets it is spoken over (``None``: every target — servelab's own),
    its HTTP contract's factory and, where it has one, its gRPC contract's (``None``: gRPC
    targets speak servelab's own ``Predictor``)."""

    name: str
    targets: frozenset[str] | None
    http: Callable[[ProtocolOptions], HttpContract]
    grpc: Callable[[ProtocolOptions], OipGrpc] | None = None

    def check_target(self, target: str) -> None:
        if self.targets is not None and target not in self.targets:
            raise LoadOptionError(
                f"--protocol {self.name} goes with --target {' or '.join(sorted(self.targets))}, "
                f"not {target}"
            )


PROTOCOLS: Final[Mapping[str, Protocol]] = {
    protocol.name: protocol
    for protocol in (
        Protocol("servelab", None, _servelab),
        Protocol("oip", frozenset({"rest", "grpc", "grpc-stream"}), _oip, _oip_grpc),
        Protocol("kserve-v1", frozenset({"rest"}), _kserve_v1),
        Protocol("bentoml", frozenset({"rest"}), _bentoml),
        Protocol("template", frozenset({"rest"}), _template),
    )
}


def protocol(name: str) -> Protocol:
    found = PROTOCOLS.get(name)
    if found is None:
        raise LoadOptionError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {name!r}")
    return found
