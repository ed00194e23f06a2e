"""``--model SPEC``: one syntax for every command. Stdlib only.

``reference``                        the lesson's model
``synthetic:fixed:5ms``              waits 5 ms
``synthetic:uniform:2ms:8ms``        waits U(2 ms, 8 ms)
``synthetic:exponential:5ms``        waits Exp(mean 5 ms)
``synthetic:lognormal:5ms:0.5``      waits LogNormal(median 5 ms, sigma 0.5)
``synthetic:cpu:2ms``                computes for 2 ms of CPU time
Options after the parameters, on any synthetic model: ``:row=0.1ms`` adds a per-row cost,
``:seed=7`` seeds the service-time draws (default 0), e.g. ``synthetic:fixed:1ms:row=50us``.
``digits``                           the built-in real model: scikit-learn LogisticRegression on
                                     load_digits (64 features), trained at first use and cached
``sklearn:PATH``                     a joblib file holding a fitted estimator with ``predict``
``onnx:PATH``                        an ONNX graph run by onnxruntime (threads: OMP_NUM_THREADS)
``package.module:callable``          a user's model: an object with ``predict(rows)``, a class
                                     building one with no arguments, or a function of rows.

The ``digits``, ``sklearn:`` and ``onnx:`` models live in ``targets.learned``, imported only for
those SPECs: the rest of this module, and ``targets.models``, need the standard library alone.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from targets.errors import SpecError
from targets.models import (
    CallableModel,
    Distribution,
    Model,
    ReferenceModel,
    ServiceTime,
    SyntheticModel,
)
from targets.units import parse_duration_s

_ARITY: dict[str, int] = {"fixed": 1, "uniform": 2, "exponential": 1, "lognormal": 2, "cpu": 1}
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
DEFAULT_MODEL_SPEC = "reference"
LEARNED_KINDS = ("sklearn", "onnx")  # SPEC prefixes served by targets.learned


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    """A parsed ``synthetic:`` SPEC; ``build()`` makes a fresh, freshly seeded model."""

    spec: str
    kind: str
    service_time: ServiceTime
    per_row_s: float
    seed: int

    def build(self) -> SyntheticModel:
        return SyntheticModel(
            self.service_time,
            name=self.spec,
            per_row_s=self.per_row_s,
            seed=self.seed,
            cpu_bound=self.kind == "cpu",
        )


def _bad(spec: str, problem: str) -> SpecError:
    return SpecError(f"bad --model {spec!r}: {problem}")


def _duration(spec: str, text: str, what: str) -> float:
    try:
        seconds = parse_duration_s(text, what=what)
    except ValueError as exc:
        raise _bad(spec, str(exc)) from exc
    if not math.isfinite(seconds):  # so many digits that the float overflows
        raise _bad(spec, f"{what} {text!r} is too long")
    return seconds


def parse_synthetic(spec: str) -> SyntheticSpec:
    """Parse a ``synthetic:KIND:PARAM...[:row=D][:seed=N]`` SPEC."""
    parts = spec.split(":")[1:]
    if not parts or not parts[0]:
        raise _bad(spec, f"synthetic needs a kind, one of {', '.join(_ARITY)}")
    kind, rest = parts[0], parts[1:]
    if kind not in _ARITY:
        raise _bad(spec, f"unknown synthetic kind {kind!r} (expected one of {', '.join(_ARITY)})")
    params = [part for part in rest if "=" not in part]
    options = [part for part in rest if "=" in part]
    if rest[: len(params)] != params:
        raise _bad(spec, "key=value options must come after the parameters")
    if len(params) != _ARITY[kind]:
        raise _bad(spec, f"synthetic:{kind} takes {_ARITY[kind]} parameter(s), got {len(params)}")
    per_row_s, seed = 0.0, 0
    for option in options:
        key, _, value = option.partition("=")
        if key == "row":
            per_row_s = _duration(spec, value, "per-row cost")
        elif key == "seed":
            if not re.fullmatch(r"\d+", value):
                raise _bad(spec, f"seed must be a non-negative integer, got {value!r}")
            seed = int(value)
        else:
            raise _bad(spec, f"unknown option {key!r} (expected row=DURATION or seed=N)")
    first = _duration(spec, params[0], "service time")
    if kind == "uniform":
        high = _duration(spec, params[1], "service time")
        if high < first:
            raise _bad(spec, "uniform low must not exceed high")
        service_time = ServiceTime("uniform", first, high)
    elif kind == "lognormal":
        try:
            sigma = float(params[1])
        except ValueError:
            raise _bad(spec, f"lognormal sigma must be a number, got {params[1]!r}") from None
        if not 0 <= sigma <= 10:
            raise _bad(spec, f"lognormal sigma must be between 0 and 10, got {params[1]}")
        service_time = ServiceTime("lognormal", first, sigma)
    else:
        distribution = cast(Distribution, "fixed" if kind == "cpu" else kind)
        service_time = ServiceTime(distribution, first)
    return SyntheticSpec(spec, kind, service_time, per_row_s, seed)


def _load_user_model(spec: str) -> Model:
    if not _IMPORT_PATH.match(spec):
        raise _bad(
            spec,
            "expected 'reference', 'synthetic:KIND:...', 'digits', 'sklearn:PATH', "
            "'onnx:PATH' or 'package.module:callable'",
        )
    module_name, _, attr_path = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # an import runs user code: any error is the SPEC's problem
        raise _bad(spec, f"cannot import {module_name!r}: {exc}") from exc
    for attr in attr_path.split("."):
        if not hasattr(target, attr):
            raise _bad(spec, f"module {module_name!r} has no attribute {attr_path!r}")
        target = getattr(target, attr)
    if inspect.isclass(target):
        try:
            target = target()
        except Exception as exc:
            raise _bad(spec, f"cannot build {attr_path}(): {exc}") from exc
    if isinstance(target, Model):
        return target
    predict = getattr(target, "predict", target)
    if not callable(predict):
        raise _bad(spec, f"{attr_path} is neither a model nor a function of rows")
    version = str(getattr(target, "version", getattr(target, "__version__", "0")))
    return CallableModel(
        cast(Callable[[Sequence[Sequence[float]]], Sequence[float]], predict),
        name=str(getattr(target, "name", spec)),
        version=version,
    )


def _load_learned_model(spec: str) -> Model:
    """``digits``, ``sklearn:PATH`` or ``onnx:PATH``, through ``targets.learned`` (imported here
    only, so the core stays stdlib-only)."""
    kind, _, path = spec.partition(":")
    try:
        from targets import learned
    except ImportError as exc:  # a bare Python (an edge bundle's) has no scikit-learn
        raise _bad(spec, f"{kind} models need {exc.name or 'scikit-learn'} installed") from exc
    try:
        if kind == "digits":
            return learned.load_digits_model()
        if kind == "sklearn":
            return learned.load_sklearn_model(path)
        return learned.load_onnx_model(path)
    except SpecError as exc:
        raise _bad(spec, str(exc)) from exc


def load_model(spec: str = DEFAULT_MODEL_SPEC) -> Model:
    """Build the model a SPEC names; ``SpecError`` (one line, naming the problem) otherwise."""
    spec = spec.strip()
    if spec == "reference":
        return ReferenceModel()
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return parse_synthetic(spec).build()
    if spec == "digits" or spec.partition(":")[0] in LEARNED_KINDS:
        return _load_learned_model(spec)
    return _load_user_model(spec)


def is_stdlib_model(spec: str) -> bool:
    """Whether the SPEC names a model that runs with the standard library alone (edge bundles)."""
    spec = spec.strip()
    return spec == "reference" or spec.startswith("synthetic:")
