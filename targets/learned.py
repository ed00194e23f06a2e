"""Real models: a fitted scikit-learn estimator, an ONNX graph, and the built-in ``digits``.

Imported only by ``targets.spec.load_model`` for the SPECs that name these models, so the core
(schema, models, SPECs, service) stays stdlib-only. Every load problem a user can cause — a path
that will not do, a file that holds no model, a model that does not take the width it declares —
is a one-line ``SpecError`` raised here, before anything serves.

``digits`` is ``LogisticRegression`` fitted on ``sklearn.datasets.load_digits()`` (shipped with
scikit-learn: nothing is downloaded), trained once on a single BLAS thread and cached as joblib
under ``cache_dir()``, in a file named for the scikit-learn version that wrote it: a pickle only
loads without warnings under the version that made it, which is why pyproject pins one.

A joblib file is a pickle: loading one runs whatever code it holds. Load only files you trust.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from pathlib import Path
from typing import Any, Final

import joblib
import numpy as np
import sklearn
from numpy.typing import NDArray

from targets.errors import SpecError
from targets.files import PATH_ERRNOS, write_atomic
from targets.models import Rows

DIGITS_NAME: Final = "digits"
DIGITS_VERSION: Final = "1.0"
DIGITS_FEATURES: Final = 64
# Changing the recipe below means a new cache file: bump DIGITS_RECIPE.
DIGITS_RECIPE: Final = "logreg-c1-v1"
DIGITS_HYPERPARAMETERS: Final[dict[str, Any]] = {
    "C": 1.0,
    "max_iter": 1000,  # lbfgs converges in 177 iterations on the raw 0..16 pixels
    "tol": 1e-4,
    "random_state": 0,
}
ONNX_OPSET: Final = {"": 18, "ai.onnx.ml": 3}  # onnxruntime >= 1.20 runs both
ONNX_INPUT_NAME: Final = "X"  # skl2onnx's own name for the feature matrix
_ONNX_DTYPES: Final = {"tensor(double)": np.float64, "tensor(float)": np.float32}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _read_model_file(path: str, what: str) -> bytes:
    if not path:
        suffix = "joblib" if what == "sklearn" else what
        raise SpecError(f"{what} needs a PATH, e.g. {what}:model.{suffix}")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        if exc.errno not in PATH_ERRNOS:
            raise
        raise SpecError(f"cannot read {path!r}: {exc.strerror or exc}") from exc


def _to_predictions(values: Any, row_count: int) -> list[float]:
    """One float per row from a model's raw output (labels become floats)."""
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or array.shape[0] != row_count:
        raise ValueError(f"output of shape {array.shape} for {row_count} rows")
    predictions: list[float] = array.astype(np.float64).tolist()
    return predictions


class SklearnModel:
    """A fitted scikit-learn estimator (anything with ``predict``) serving float predictions."""

    def __init__(self, estimator: Any, *, name: str, version: str) -> None:
        self.estimator = estimator
        self._name = name
        self._version = version
        width = getattr(estimator, "n_features_in_", None)
        self.features: int | None = int(width) if isinstance(width, int | np.integer) else None

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    def predict(self, rows: Rows) -> list[float]:
        if not rows:
            return []
        return _to_predictions(self.estimator.predict(np.asarray(rows, np.float64)), len(rows))

    async def predict_async(self, rows: Rows) -> list[float]:
        return self.predict(rows)  # computes on the loop, as a CPU-bound model would


def intra_op_threads() -> int:
    """The hardware profile's thread cap (``OMP_NUM_THREADS``), or 0: onnxruntime's default."""
    text = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(text) if text.isdigit() and int(text) > 0 else 0


class OnnxModel:
    """An ONNX graph run by onnxruntime: its first input takes the rows, its first output
    gives one prediction per row. Intra-op threads follow ``intra_op_threads()``; inter-op 1."""

    def __init__(self, graph: bytes, *, name: str, version: str, threads: int = 0) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            graph, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.threads = threads
        self._name = name
        self._version = version
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ValueError(f"the graph has {len(inputs)} inputs; servelab feeds one")
        self._input_name: str = inputs[0].name
        self._output_name: str = outputs[0].name
        dtype = _ONNX_DTYPES.get(inputs[0].type)
        shape = inputs[0].shape
        if dtype is None or len(shape) != 2:
            raise ValueError(
                f"input {inputs[0].name!r} is a {inputs[0].type} of shape {shape}; "
                "servelab feeds a float or double tensor of shape [rows, features]"
            )
        self._dtype = dtype
        self.features: int | None = shape[1] if isinstance(shape[1], int) else None

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    def predict(self, rows: Rows) -> list[float]:
        if not rows:
            return []
        feed = {self._input_name: np.asarray(rows, dtype=self._dtype)}
        (output,) = self.session.run([self._output_name], feed)
        return _to_predictions(output, len(rows))

    async def predict_async(self, rows: Rows) -> list[float]:
        return self.predict(rows)


def _check_serves(model: SklearnModel | OnnxModel) -> None:
    """One probe row of the declared width: a model that cannot take it, or answers something
    other than one finite number, fails at load rather than on every request."""
    if model.features is None:
        return
    try:
        predictions = model.predict([[0.0] * model.features])
    except Exception as exc:  # whatever a broken model raises is the SPEC's problem
        raise SpecError(
            f"the model declares {model.features} features but fails on such a row: "
            f"{type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    if not all(map(math.isfinite, predictions)):
        raise SpecError(f"the model answers {predictions} to a row of zeros, not a finite number")


def _check_fitted(path: str, estimator: Any) -> None:
    from sklearn.base import BaseEstimator
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if isinstance(estimator, BaseEstimator):
        try:
            check_is_fitted(estimator)
        except NotFittedError as exc:
            raise SpecError(f"{path!r} holds an unfitted {type(estimator).__name__}") from exc


def _content_version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def load_sklearn_model(path: str) -> SklearnModel:
    """``sklearn:PATH``: a joblib file holding a fitted estimator with ``predict``. Its version
    is the file's content hash, so ``model_version`` pins the very file served."""
    data = _read_model_file(path, "sklearn")
    try:
        estimator = joblib.load(io.BytesIO(data))
    except Exception as exc:  # unpickling a foreign file can raise almost anything
        problem = f"{type(exc).__name__}: {_one_line(exc)}"
        raise SpecError(f"{path!r} is not a joblib file ({problem})") from exc
    if not callable(getattr(estimator, "predict", None)):
        raise SpecError(
            f"{path!r} holds a {type(estimator).__name__}, not an estimator with predict()"
        )
    _check_fitted(path, estimator)
    model = SklearnModel(estimator, name=Path(path).stem, version=_content_version(data))
    _check_serves(model)
    return model


def load_onnx_model(path: str, *, threads: int | None = None) -> OnnxModel:
    """``onnx:PATH``: an ONNX graph, run with ``threads`` intra-op threads (default:
    ``intra_op_threads()``). Its version is the file's content hash."""
    data = _read_model_file(path, "onnx")
    try:
        model = OnnxModel(
            data,
            name=Path(path).stem,
            version=_content_version(data),
            threads=intra_op_threads() if threads is None else threads,
        )
    except Exception as exc:  # onnxruntime raises its own (multi-line) errors for bad graphs
        raise SpecError(
            f"{path!r} is not an ONNX model servelab can run: {_one_line(exc)}"
        ) from exc
    _check_serves(model)
    return model


def cache_dir() -> Path:
    """``$SERVELAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/servelab``, else ``~/.cache/servelab``."""
    if explicit := os.environ.get("SERVELAB_CACHE_DIR"):
        return Path(explicit)
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg) / "servelab"
    return Path.home() / ".cache" / "servelab"


def digits_cache_path(directory: Path | None = None) -> Path:
    """Where the digits model is cached, named for the recipe and the scikit-learn version."""
    name = f"digits-{DIGITS_RECIPE}-sklearn-{sklearn.__version__}.joblib"
    return (cache_dir() if directory is None else directory) / name


def train_digits() -> Any:
    """Fit the digits estimator: fixed hyper-parameters on all 1,797 rows, one BLAS thread (so
    the reduction order, and the coefficients, do not depend on the core count)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    features, labels = digits_dataset()
    with threadpool_limits(limits=1):
        return LogisticRegression(**DIGITS_HYPERPARAMETERS).fit(features, labels)


def _dump(estimator: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


def _cached_digits(path: Path) -> Any | None:
    from sklearn.linear_model import LogisticRegression

    try:
        estimator = joblib.load(path)
    except Exception:  # missing, or damaged: retrained and replaced, never served
        return None
    return estimator if isinstance(estimator, LogisticRegression) else None


def digits_estimator(directory: Path | None = None) -> Any:
    """The fitted digits estimator: from the cache, else trained and cached (written
    atomically, so two processes starting at once each write a whole file)."""
    path = digits_cache_path(directory)
    estimator = _cached_digits(path)
    if estimator is None:
        estimator = train_digits()
        try:
            write_atomic(path, _dump(estimator))
        except OSError as exc:
            if exc.errno not in PATH_ERRNOS:
                raise
            raise SpecError(
                f"cannot write the digits cache {str(path)!r}: {exc.strerror or exc} "
                "(set SERVELAB_CACHE_DIR to a writable directory)"
            ) from exc
    return estimator


def load_digits_model(directory: Path | None = None) -> SklearnModel:
    """``--model digits``: 64 pixel values (0..16) in, the digit (0.0..9.0) out."""
    return SklearnModel(digits_estimator(directory), name=DIGITS_NAME, version=DIGITS_VERSION)


def digits_onnx(estimator: Any) -> bytes:
    """The digits estimator as ONNX: one double input ``X`` of shape [rows, 64]; outputs
    ``label`` (int64) and ``probabilities`` (a plain tensor, no ZipMap)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType

    graph = convert_sklearn(
        estimator,
        initial_types=[(ONNX_INPUT_NAME, DoubleTensorType([None, DIGITS_FEATURES]))],
        options={id(estimator): {"zipmap": False}},
        target_opset=ONNX_OPSET,
    )
    data: bytes = graph.SerializeToString()
    return data


def export_digits(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write the digits model servelab serves to ``directory`` as ``digits.joblib`` (for
    MLServer, KServe, BentoML) and ``digits.onnx``; returns both paths."""
    estimator = digits_estimator()
    target = Path(directory)
    joblib_path, onnx_path = target / "digits.joblib", target / "digits.onnx"
    write_atomic(joblib_path, _dump(estimator))
    write_atomic(onnx_path, digits_onnx(estimator))
    return joblib_path, onnx_path


def digits_dataset() -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """``load_digits()``'s 1,797 rows of 64 features and their labels."""
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    return np.asarray(features, np.float64), np.asarray(labels, np.int64)
