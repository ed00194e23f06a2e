"""Real models: the built-in digits, ``sklearn:PATH``, ``onnx:PATH``, and the width check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import onnx
import pytest
import sklearn
from onnx import TensorProto, helper

from targets import learned
from targets.errors import InvalidRequest, SpecError
from targets.models import input_width
from targets.rest.app import create_app
from targets.service import PredictionService
from targets.spec import is_stdlib_model, load_model

ROWS, LABELS = learned.digits_dataset()
ALL_ROWS: list[list[float]] = ROWS.tolist()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The digits model exported once (trained into a private cache) for the round trips."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SERVELAB_CACHE_DIR", str(cache))
        return learned.export_digits(tmp_path_factory.mktemp("export"))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("SERVELAB_CACHE_DIR", str(directory))
    return directory


def test_digits_trains_the_same_model_in_fresh_caches(tmp_path: Path) -> None:
    first = learned.load_digits_model(tmp_path / "one")
    second = learned.load_digits_model(tmp_path / "two")
    predictions = first.predict(ALL_ROWS)
    assert predictions == second.predict(ALL_ROWS)  # bit for bit, all 1,797 rows
    assert all(type(value) is float for value in predictions)
    np.testing.assert_array_equal(first.estimator.coef_, second.estimator.coef_)


def test_digits_is_accurate_on_load_digits(tmp_path: Path) -> None:
    model = learned.load_digits_model(tmp_path)
    accuracy = float(np.mean(np.asarray(model.predict(ALL_ROWS)) == LABELS))
    assert accuracy > 0.95  # 1.0 with scikit-learn 1.9.1: every training row right
    assert (model.name, model.version, model.features) == ("digits", "1.0", 64)


def test_digits_cache_is_reused_not_retrained(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainings: list[object] = []
    train = learned.train_digits

    def counting_train() -> Any:
        trainings.append(1)
        return train()

    monkeypatch.setattr(learned, "train_digits", counting_train)
    first = load_model("digits")
    path = learned.digits_cache_path()
    assert path.parent == cache
    assert path.name == f"digits-{learned.DIGITS_RECIPE}-sklearn-{sklearn.__version__}.joblib"
    written_ns = path.stat().st_mtime_ns
    second = load_model("digits")
    assert len(trainings) == 1
    assert path.stat().st_mtime_ns == written_ns
    assert first.predict(ALL_ROWS[:50]) == second.predict(ALL_ROWS[:50])
    assert not list(cache.glob(".tmp-*"))  # written atomically: no temporary left behind


def test_a_damaged_cache_is_retrained(cache: Path) -> None:
    path = learned.digits_cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a pickle")
    assert load_model("digits").predict(ALL_ROWS[:3]) == [0.0, 1.0, 2.0]
    assert isinstance(joblib.load(path), type(learned.train_digits()))


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVELAB_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert learned.cache_dir() == Path("/xdg/servelab")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert learned.cache_dir() == Path.home() / ".cache" / "servelab"
    monkeypatch.setenv("SERVELAB_CACHE_DIR", "/explicit")
    assert learned.cache_dir() == Path("/explicit")


def test_an_unwritable_cache_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SERVELAB_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(SpecError, match="SERVELAB_CACHE_DIR") as raised:
        load_model("digits")
    assert "\n" not in str(raised.value)


def test_sklearn_and_onnx_round_trip_the_exported_digits(exported: tuple[Path, Path]) -> None:
    joblib_path, onnx_path = exported
    assert (joblib_path.name, onnx_path.name) == ("digits.joblib", "digits.onnx")
    served = learned.SklearnModel(learned.train_digits(), name="digits", version="1.0")
    from_joblib = load_model(f"sklearn:{joblib_path}")
    from_onnx = load_model(f"onnx:{onnx_path}")
    expected = served.predict(ALL_ROWS)
    assert from_joblib.predict(ALL_ROWS) == expected
    assert from_onnx.predict(ALL_ROWS) == expected  # labels, exactly
    assert input_width(from_joblib) == input_width(from_onnx) == 64
    assert from_joblib.name == "digits"
    assert len(from_joblib.version) == 12  # the file's content hash


def test_onnx_export_is_what_other_servers_expect(exported: tuple[Path, Path]) -> None:
    graph = onnx.load(exported[1])
    assert [node.name for node in graph.graph.input] == [learned.ONNX_INPUT_NAME]
    assert [node.name for node in graph.graph.output] == ["label", "probabilities"]


def test_onnx_threads_follow_the_thread_cap(
    exported: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert learned.intra_op_threads() == 2
    model = learned.load_onnx_model(str(exported[1]))
    assert model.threads == 2
    assert model.session.get_session_options().intra_op_num_threads == 2
    assert model.session.get_session_options().inter_op_num_threads == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert learned.intra_op_threads() == 0  # onnxruntime's default
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert learned.intra_op_threads() == 0


def _mismatched_onnx(path: Path) -> Path:
    """A graph declaring 64 features whose weights take 32."""
    weights = helper.make_tensor("w", TensorProto.DOUBLE, [32, 1], [0.5] * 32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mismatched",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None, 1])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def _bad_specs(tmp_path: Path, exported: tuple[Path, Path]) -> list[tuple[str, str]]:
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    a_dict = tmp_path / "dict.joblib"
    joblib.dump({"weights": [1, 2]}, a_dict)
    unfitted = tmp_path / "unfitted.joblib"
    joblib.dump(type(learned.train_digits())(), unfitted)
    narrowed = learned.train_digits()
    narrowed.n_features_in_ = 32  # declares 32, its coefficients take 64
    lying = tmp_path / "lying.joblib"
    joblib.dump(narrowed, lying)
    return [
        ("sklearn:/no/such/model.joblib", "No such file"),
        ("onnx:/no/such/model.onnx", "No such file"),
        (f"sklearn:{tmp_path}", "Is a directory"),
        ("sklearn:", "needs a PATH"),
        ("onnx:", "needs a PATH"),
        (f"sklearn:{text}", "is not a joblib file"),
        (f"onnx:{text}", "is not an ONNX model"),
        (f"onnx:{exported[0]}", "is not an ONNX model"),
        (f"sklearn:{a_dict}", "holds a dict, not an estimator"),
        (f"sklearn:{unfitted}", "unfitted LogisticRegression"),
        (f"sklearn:{lying}", "declares 32 features but fails"),
        (f"onnx:{_mismatched_onnx(tmp_path / 'mismatched.onnx')}", "mismatched.onnx"),
    ]


def test_bad_paths_and_files_are_one_line_spec_errors(
    tmp_path: Path, exported: tuple[Path, Path]
) -> None:
    for spec, problem in _bad_specs(tmp_path, exported):
        with pytest.raises(SpecError) as raised:
            load_model(spec)
        message = str(raised.value)
        assert message.startswith(f"bad --model {spec!r}: "), message
        assert problem in message, message
        assert "\n" not in message, message


def test_learned_models_are_not_stdlib() -> None:
    assert not any(is_stdlib_model(spec) for spec in ("digits", "sklearn:m.joblib", "onnx:m"))


def test_the_service_refuses_rows_of_another_width(tmp_path: Path) -> None:
    service = PredictionService(learned.load_digits_model(tmp_path), transport="rest")
    assert service.features == 64
    with pytest.raises(InvalidRequest, match="takes rows of 64 features, got 3") as raised:
        service.parse({"instances": [1, 2, 3]}, "v1")
    assert raised.value.field == "instances"
    with pytest.raises(InvalidRequest, match=r"got 63 in rows\[1\]") as raised:
        service.parse({"rows": [ALL_ROWS[0], ALL_ROWS[1][:63]]}, "v2")
    assert raised.value.field == "rows[1]"
    answer = service.predict(service.parse({"rows": ALL_ROWS[:4]}, "v2"))
    assert answer["predictions"] == [0.0, 1.0, 2.0, 3.0]


def test_models_of_any_width_declare_none() -> None:
    for spec in ("reference", "synthetic:fixed:0ms", "tests.targets.sample_models:SumModel"):
        service = PredictionService(load_model(spec), transport="rest")
        assert service.features is None
        assert service.parse({"instances": [1, 2, 3]}, "v1").rows == [[1, 2, 3]]


async def test_rest_target_serves_digits(cache: Path) -> None:
    service = PredictionService(load_model("digits"), transport="rest")
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://rest") as client:
        ok = await client.post("/v2/predict", json={"rows": ALL_ROWS[:10]})
        narrow = await client.post("/v1/predict", json={"instances": [1.0, 2.0]})
    assert ok.status_code == 200, ok.text
    assert ok.json()["predictions"] == [float(label) for label in LABELS[:10]]
    assert ok.json()["metadata"]["model_name"] == "digits"
    assert narrow.status_code == 422, narrow.text
    assert "64 features" in narrow.json()["error"]["message"]
    assert os.listdir(cache)  # the model came from (and went to) the test's cache
