"""``servelab run`` against the real third-party servers ``make servers`` builds (issue 15 item 6).

One server at a time: each class holds one class-scoped server (MLServer with
``parallel_workers`` 0, KServe, one BentoML worker, all on 127.0.0.1), so the three never run
together on this 2-core machine; the killed-mid-run tests start their own, after the classes.
Every run is ``servelab run`` in-process (``loadtests.cli.app.main``) with ``--url`` or
``--address``. A missing environment FAILS the test, naming ``make servers``;
``SERVELAB_SKIP_SERVERS=1`` skips them all instead.

What the servers answer to servelab's deliberately invalid payloads (``--invalid-fraction``,
by slot: a wrong shape, an unknown datatype, no input) is pinned per kind in
``INVALID_STATUSES`` and ``GRPC_INVALID_STATUSES`` (the probes and the run checks are in
``checks.py``). Several answers are not 4xx / INVALID_ARGUMENT but **500 / INTERNAL** —
findings about the servers, not servelab's doing, and asserted as what they are:

- a tensor whose data is one value short of its shape: MLServer 1.7.1 (numpy ``reshape``
  raises, uncaught: ``text/plain`` "Internal Server Error"; INTERNAL over gRPC), KServe 0.21 V2
  (REST and gRPC), BentoML 1.4 (ragged rows pass its pydantic check, numpy then fails);
- an unknown datatype over MLServer's gRPC (INTERNAL "'FP99' is not a valid Datatype"; its REST
  says 422);
- KServe V2 with no input at all (``IndexError``; INTERNAL over gRPC), and KServe V1 for every
  invalid kind: KServe's V1 path hands ``instances`` to the model unchecked, and sklearn raises.

MLServer and KServe also *close the keep-alive connection* after each of those 500s, without
``Connection: close`` (Starlette's ServerErrorMiddleware re-raises and uvicorn then drops the
connection), so a request servelab sends on it before it sees the close fails as ``reset`` or
``disconnected``, valid or not. servelab does not resend a POST, and counts those as they are.
BentoML keeps the connection.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from loadtests.cli.app import main
from loadtests.results.result import load_result
from targets.learned import export_digits
from tests.conftest import ServelabCli
from tests.servers.checks import (
    TENSOR,
    assert_clean,
    assert_grpc_invalid_injection,
    assert_invalid_injection,
    grpc_invalid_statuses,
    grpc_run,
    invalid_statuses,
    rest_run,
)
from tests.servers.launch import RunningServer, ServerStartError, is_built, start

pytestmark = pytest.mark.slow

SKIP_VARIABLE = "SERVELAB_SKIP_SERVERS"
OIP = ("--protocol", "oip", "--tensor", TENSOR, "--model-name", "digits", "--model", "digits")
KSERVE_V1 = ("--protocol", "kserve-v1", "--model-name", "digits", "--model", "digits")
# --model digits: the rows are 64 wide (without it, and with no tensor, servelab sends 8)
BENTOML = ("--protocol", "bentoml", "--model", "digits")
LOADS = {
    "closed": ("--concurrency", "4", "--requests", "400"),
    "open": ("--rate", "100", "--duration", "2s"),
}
INVALID_LOAD = ("--concurrency", "4", "--requests", "400", "--invalid-fraction", "0.2")
# What each server answers to each kind of servelab's invalid payloads (module docstring).
INVALID_STATUSES: Mapping[tuple[str, str], Mapping[str, int]] = {
    ("mlserver", "oip"): {"shape": 500, "datatype": 422, "missing": 400},
    ("kserve", "oip"): {"shape": 500, "datatype": 400, "missing": 500},
    ("kserve", "kserve-v1"): {"shape": 500, "datatype": 500, "missing": 500},
    ("bentoml", "bentoml"): {"shape": 500, "datatype": 400, "missing": 400},
}
# the same over gRPC ModelInfer (servelab's OIP gRPC invalid requests, by kind)
GRPC_INVALID_STATUSES: Mapping[str, Mapping[str, str]] = {
    "mlserver": {"shape": "INTERNAL", "datatype": "INTERNAL", "missing": "INVALID_ARGUMENT"},
    "kserve": {"shape": "INTERNAL", "datatype": "INVALID_ARGUMENT", "missing": "INTERNAL"},
}
KILLED_ERRORS = {"connect", "reset", "disconnected"}
LOCUST = ("-u", "2", "-r", "2", "-t", "2s")
LOCUST_TIMEOUT_S = 120.0


def _locust(
    servelab_cli: ServelabCli, tmp_path: Path, server: RunningServer, *args: str
) -> dict[str, object]:
    """``servelab locust`` for 2 s, 2 users, against ``server``: exit 0; the result file. The
    user is ``RestUser`` unless ``args`` name another (and its ``--grpc-host``)."""
    out = tmp_path / "locust.json"
    user = () if any(arg.endswith("User") for arg in args) else ("RestUser",)
    done = servelab_cli("locust", *LOCUST, *user, "--host", server.base_url, *args,
                        "--out", str(out), cwd=tmp_path, timeout=LOCUST_TIMEOUT_S)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = dict[str, object](load_result(out))
    summary = result["summary"]
    assert isinstance(summary, dict)
    assert summary["requests"] > 0
    assert summary["schema_success_rate"] == 1.0
    assert summary["failures"] == 0
    return result


KILL_WAIT_S = 30.0


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """servelab's digits model as joblib, the file all three servers load."""
    joblib_path, _onnx_path = export_digits(tmp_path_factory.mktemp("digits"))
    return joblib_path


def _require_env(name: str) -> None:
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"{SKIP_VARIABLE}=1: the real-server tests are skipped")
    if not is_built(name):
        pytest.fail(
            f"{name}: no server environment in .servers/{name}: run `make servers` "
            f"(or set {SKIP_VARIABLE}=1 to skip the real-server tests)",
            pytrace=False,
        )


def _serve(
    name: str, model: Path, settings: Mapping[str, object] | None = None
) -> Iterator[RunningServer]:
    _require_env(name)
    try:
        with start(name, model, settings=settings) as server:
            yield server
    except ServerStartError as exc:
        pytest.fail(f"{name} did not start: {exc}", pytrace=False)


# MLServer: parallel_workers 0 runs inference in the server process (fits 2 cores)
MLSERVER_SETTINGS = {"parallel_workers": 0}


@pytest.fixture(scope="class")
def mlserver(digits_model: Path) -> Iterator[RunningServer]:
    yield from _serve("mlserver", digits_model, MLSERVER_SETTINGS)


@pytest.fixture(scope="class")
def kserve(digits_model: Path) -> Iterator[RunningServer]:
    yield from _serve("kserve", digits_model)


@pytest.fixture(scope="class")
def bentoml(digits_model: Path) -> Iterator[RunningServer]:
    yield from _serve("bentoml", digits_model)


class TestMLServer:
    """MLServer 1.7.1, the sklearn runtime, OIP over REST."""

    @pytest.mark.parametrize("load", sorted(LOADS))
    def test_oip_answers_every_request_in_schema(
        self, mlserver: RunningServer, tmp_path: Path, load: str
    ) -> None:
        code, result = rest_run(tmp_path, mlserver, *OIP, *LOADS[load])
        assert_clean(code, result, requests=400 if load == "closed" else None)
        assert result["run"]["url"] == mlserver.base_url
        assert result["run"]["model"] == "digits"

    def test_a_locust_user_speaks_oip_to_it(
        self, mlserver: RunningServer, tmp_path: Path, servelab_cli: ServelabCli
    ) -> None:
        result = _locust(servelab_cli, tmp_path, mlserver, *OIP)
        assert result["run"]["protocol"] == "oip"  # type: ignore[index]

    def test_a_locust_grpc_user_speaks_oip_to_it(
        self, mlserver: RunningServer, tmp_path: Path, servelab_cli: ServelabCli
    ) -> None:
        assert mlserver.grpc_address is not None
        result = _locust(servelab_cli, tmp_path, mlserver, "GrpcUser",
                         "--grpc-host", mlserver.grpc_address, *OIP)  # fmt: skip
        assert result["run"]["protocol"] == "oip"  # type: ignore[index]

    def test_metadata_without_inputs_needs_a_tensor(
        self, mlserver: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The sklearn runtime's metadata lists no inputs: one line naming --tensor, exit 2."""
        code = main(
            ["run", "--target", "rest", "--url", mlserver.base_url, "--protocol", "oip",
             "--model-name", "digits", "--requests", "10", "--out", str(tmp_path / "r.json")]
        )  # fmt: skip
        assert code == 2
        assert "lists no inputs: give them with --tensor" in capsys.readouterr().err

    def test_each_invalid_kind_gets_its_pinned_status(self, mlserver: RunningServer) -> None:
        """Wrong shape: 500 (a finding, module docstring); datatype 422; no input 400."""
        assert invalid_statuses(mlserver.infer_url, "oip") == INVALID_STATUSES["mlserver", "oip"]

    def test_invalid_payloads_are_rejections_or_the_servers_500s(
        self, mlserver: RunningServer, tmp_path: Path
    ) -> None:
        """Unknown datatype and no input are expected rejections; the wrong shape is MLServer's
        500 (and the connection it drops after it), so the default gate fails the run."""
        code, result = rest_run(tmp_path, mlserver, *OIP, *INVALID_LOAD)
        assert_invalid_injection(code, result, INVALID_STATUSES["mlserver", "oip"], True)

    @pytest.mark.parametrize("load", sorted(LOADS))
    def test_grpc_oip_answers_every_request_in_schema(
        self, mlserver: RunningServer, tmp_path: Path, load: str
    ) -> None:
        code, result = grpc_run(tmp_path, mlserver, *OIP, *LOADS[load])
        assert_clean(code, result, requests=400 if load == "closed" else None)
        assert result["run"]["address"] == mlserver.grpc_address

    def test_grpc_raw_tensors_answer_in_schema(
        self, mlserver: RunningServer, tmp_path: Path
    ) -> None:
        code, result = grpc_run(tmp_path, mlserver, *OIP, "--raw-tensors", *LOADS["closed"])
        assert_clean(code, result, requests=400)

    def test_grpc_each_invalid_kind_gets_its_pinned_status(self, mlserver: RunningServer) -> None:
        """Wrong shape and unknown datatype: INTERNAL (findings: over REST the datatype is a
        422); no input: INVALID_ARGUMENT."""
        assert mlserver.grpc_address is not None
        statuses = grpc_invalid_statuses(mlserver.grpc_address)
        assert statuses == GRPC_INVALID_STATUSES["mlserver"]

    def test_grpc_invalid_payloads_are_rejections_or_internal(
        self, mlserver: RunningServer, tmp_path: Path
    ) -> None:
        code, result = grpc_run(tmp_path, mlserver, *OIP, *INVALID_LOAD)
        assert_grpc_invalid_injection(code, result, GRPC_INVALID_STATUSES["mlserver"])


class TestKServe:
    """KServe 0.21, a ``kserve.Model`` holding the joblib model: V1 and V2 (OIP) over REST."""

    @pytest.mark.parametrize("load", sorted(LOADS))
    def test_v1_answers_every_request_in_schema(
        self, kserve: RunningServer, tmp_path: Path, load: str
    ) -> None:
        code, result = rest_run(tmp_path, kserve, *KSERVE_V1, *LOADS[load])
        assert_clean(code, result, requests=400 if load == "closed" else None)

    def test_a_locust_user_speaks_kserve_v1_to_it(
        self, kserve: RunningServer, tmp_path: Path, servelab_cli: ServelabCli
    ) -> None:
        result = _locust(servelab_cli, tmp_path, kserve, *KSERVE_V1, "--instances", "64")
        assert result["run"]["protocol"] == "kserve-v1"  # type: ignore[index]

    @pytest.mark.parametrize("load", sorted(LOADS))
    def test_oip_answers_every_request_in_schema(
        self, kserve: RunningServer, tmp_path: Path, load: str
    ) -> None:
        code, result = rest_run(tmp_path, kserve, *OIP, *LOADS[load])
        assert_clean(code, result, requests=400 if load == "closed" else None)

    @pytest.mark.parametrize("protocol", ["kserve-v1", "oip"])
    def test_each_invalid_kind_gets_its_pinned_status(
        self, kserve: RunningServer, protocol: str
    ) -> None:
        """V2: wrong shape and no input 500, datatype 400; V1: every kind 500 (findings)."""
        url = (
            kserve.infer_url if protocol == "oip" else f"{kserve.base_url}/v1/models/digits:predict"
        )
        assert invalid_statuses(url, protocol) == INVALID_STATUSES["kserve", protocol]

    def test_v1_invalid_payloads_are_all_server_errors(
        self, kserve: RunningServer, tmp_path: Path
    ) -> None:
        """KServe V1 answers every invalid kind 500: no expected rejection at all, only
        ``http_500`` and the requests on the connections it dropped."""
        code, result = rest_run(tmp_path, kserve, *KSERVE_V1, *INVALID_LOAD)
        assert_invalid_injection(code, result, INVALID_STATUSES["kserve", "kserve-v1"], True)

    def test_oip_invalid_payloads_are_rejections_or_the_servers_500s(
        self, kserve: RunningServer, tmp_path: Path
    ) -> None:
        """The unknown datatype is an expected rejection (400); wrong shape and no input 500."""
        code, result = rest_run(tmp_path, kserve, *OIP, *INVALID_LOAD)
        assert_invalid_injection(code, result, INVALID_STATUSES["kserve", "oip"], True)

    @pytest.mark.parametrize("load", sorted(LOADS))
    def test_grpc_oip_answers_every_request_in_schema(
        self, kserve: RunningServer, tmp_path: Path, load: str
    ) -> None:
        code, result = grpc_run(tmp_path, kserve, *OIP, *LOADS[load])
        assert_clean(code, result, requests=400 if load == "closed" else None)

    def test_grpc_raw_tensors_answer_in_schema(self, kserve: RunningServer, tmp_path: Path) -> None:
        code, result = grpc_run(tmp_path, kserve, *OIP, "--raw-tensors", *LOADS["closed"])
        assert_clean(code, result, requests=400)

    def test_grpc_each_invalid_kind_gets_its_pinned_status(self, kserve: RunningServer) -> None:
        """Wrong shape and no input: INTERNAL (findings); unknown datatype: INVALID_ARGUMENT."""
        assert kserve.grpc_address is not None
        assert grpc_invalid_statuses(kserve.grpc_address) == GRPC_INVALID_STATUSES["kserve"]

    def test_grpc_invalid_payloads_are_rejections_or_internal(
        self, kserve: RunningServer, tmp_path: Path
    ) -> None:
        code, result = grpc_run(tmp_path, kserve, *OIP, *INVALID_LOAD)
        assert_grpc_invalid_injection(code, result, GRPC_INVALID_STATUSES["kserve"])


class TestBentoML:
    """BentoML 1.4.40, one worker, ``POST /predict`` with ``{"instances": rows}``."""

    @pytest.mark.parametrize("load", sorted(LOADS))
    def test_answers_every_request_in_schema(
        self, bentoml: RunningServer, tmp_path: Path, load: str
    ) -> None:
        code, result = rest_run(tmp_path, bentoml, *BENTOML, *LOADS[load])
        assert_clean(code, result, requests=400 if load == "closed" else None)

    def test_a_locust_user_speaks_bentoml_to_it(
        self, bentoml: RunningServer, tmp_path: Path, servelab_cli: ServelabCli
    ) -> None:
        result = _locust(servelab_cli, tmp_path, bentoml, *BENTOML, "--instances", "64")
        assert result["run"]["protocol"] == "bentoml"  # type: ignore[index]

    def test_each_invalid_kind_gets_its_pinned_status(self, bentoml: RunningServer) -> None:
        """Ragged rows: 500 (a finding); strings and no list: 400 (its pydantic check)."""
        statuses = invalid_statuses(bentoml.infer_url, "bentoml")
        assert statuses == INVALID_STATUSES["bentoml", "bentoml"]

    def test_invalid_payloads_are_rejections_or_the_servers_500s(
        self, bentoml: RunningServer, tmp_path: Path
    ) -> None:
        """Expected rejections for the 400 kinds; the ragged rows' 500s fail the default gate.
        BentoML keeps the connection open after its 500: nothing but ``http_500``."""
        code, result = rest_run(tmp_path, bentoml, *BENTOML, *INVALID_LOAD)
        assert_invalid_injection(code, result, INVALID_STATUSES["bentoml", "bentoml"], False)


def _kill_after_first_second(server: RunningServer, events: Path, killed: threading.Event) -> None:
    """SIGKILL the server once the run's event log holds its first second (the log is written
    and flushed at each 1 s fold: a line after the header means load was measured)."""
    deadline_s = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline_s:
        if events.exists() and events.read_bytes().count(b"\n") >= 2:
            server.kill()
            killed.set()
            return
        time.sleep(0.05)


PROTOCOL_ARGS = {"mlserver": OIP, "kserve": KSERVE_V1, "bentoml": BENTOML}


class TestKilledMidRun:
    """Each server SIGKILLed (workers too) while ``servelab run`` loads it: the run goes on,
    writes its result with the failures classified, and the default gate fails it (exit 1,
    README "Exit codes")."""

    @pytest.mark.parametrize("name", ["mlserver", "kserve", "bentoml"])
    def test_a_server_killed_mid_run_leaves_classified_failures(
        self,
        name: str,
        digits_model: Path,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        settings = MLSERVER_SETTINGS if name == "mlserver" else None
        events = tmp_path / "events.jsonl"
        killed = threading.Event()
        for server in _serve(name, digits_model, settings):
            killer = threading.Thread(
                target=_kill_after_first_second, args=(server, events, killed), daemon=True
            )
            killer.start()
            code, result = rest_run(
                tmp_path, server, *PROTOCOL_ARGS[name], "--concurrency", "2", "--duration", "4s",
                "--timeout", "1s", "--events", str(events),
            )  # fmt: skip
            killer.join(KILL_WAIT_S)
        assert killed.is_set(), "the run's first second never reached its event log"
        summary, errors = result["summary"], result["errors"]
        assert result["run"]["partial"] is False
        assert summary["successes"] > 0
        assert summary["failures"] == sum(errors.values()) > 0
        assert summary["requests"] == summary["successes"] + summary["failures"]
        assert errors.get("connect", 0) > 0, errors  # nothing listens after the kill
        assert set(errors) <= KILLED_ERRORS, errors
        assert code == 1
        assert "BREACHED 'success_rate>=0.99'" in capsys.readouterr().err
