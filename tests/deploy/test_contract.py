"""The ports, paths, probes and commands in the Dockerfiles, the compose file and the Kubernetes
manifests are the ones servelab really serves and parses: the route table of the REST target's
FastAPI app, the port defaults and options of ``servelab``'s own parser, the graceful shutdown
of the REST server, and a hardware profile of examples/profiles.toml for the resources.
(tests/deploy/test_live.py then GETs the probes on started servers.)"""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from fastapi.routing import APIRoute

from loadtests.cli.app import build_parser
from loadtests.jobs.bench_config import load_config
from loadtests.jobs.profiles import HardwareProfile
from loadtests.results.thresholds import parse_thresholds
from targets.rest.app import create_app
from targets.rest.server import GRACEFUL_SHUTDOWN_S
from targets.service import PredictionService
from targets.spec import DEFAULT_MODEL_SPEC, load_model
from tests.deploy.files import (
    COMPOSE,
    DOCKERFILE,
    MLSERVER_DOCKERFILE,
    PROFILE_ANNOTATION,
    PROFILES,
    container,
    env,
    exec_form,
    exposed,
    final_stage,
    healthcheck_command,
    instructions,
    load_yaml,
    manifest,
    only,
    option,
    pod_spec,
    url_in,
)


@pytest.fixture(scope="module")
def get_routes() -> set[str]:
    """The paths the REST target's app answers to GET."""
    app = create_app(PredictionService(load_model(DEFAULT_MODEL_SPEC), transport="rest"))
    return {
        route.path
        for route in app.routes
        if isinstance(route, APIRoute) and "GET" in (route.methods or ())
    }


def _parse(argv: list[str]) -> argparse.Namespace:
    """``servelab ARGV`` through servelab's real parser (a bad option fails the test)."""
    return build_parser().parse_args(argv)


def _default_port(kind: str) -> int:
    port: int = _parse(["serve", kind]).port
    return port


def _compose_service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = load_yaml(COMPOSE)["services"][name]
    return service


def _container_ports(service: dict[str, Any]) -> set[int]:
    """The container side of ``HOST_IP:HOST_PORT:CONTAINER_PORT`` mappings, each published on
    loopback only."""
    ports = set()
    for mapping in service["ports"]:
        host_ip, _host_port, container_port = mapping.split(":")
        assert host_ip == "127.0.0.1", mapping
        ports.add(int(container_port))
    return ports


def test_the_probe_routes_are_served_by_the_rest_app(get_routes: set[str]) -> None:
    assert {"/healthz", "/readyz"} <= get_routes
    assert "/nowhere" not in get_routes


def test_image_serves_rest_on_the_default_port_with_healthz(get_routes: set[str]) -> None:
    stage = final_stage(DOCKERFILE)
    command = [
        *exec_form(only(stage, "ENTRYPOINT").argument),
        *exec_form(only(stage, "CMD").argument),
    ]
    assert command[:3] == ["servelab", "serve", "rest"]
    args = _parse(command[1:])
    assert args.host == "0.0.0.0"  # reachable through the published port
    assert args.port == _default_port("rest") == 8000
    assert exposed(stage) == {_default_port("rest"), _default_port("grpc")}
    probe = url_in(" ".join(healthcheck_command(stage)))
    assert (probe.hostname, probe.port, probe.path) == ("127.0.0.1", args.port, "/healthz")
    assert probe.path in get_routes


def test_image_runs_as_a_non_root_user_in_a_slim_stage() -> None:
    every = instructions(DOCKERFILE)
    assert [item.argument.split()[-1] for item in every if item.keyword == "FROM"] == [
        "build",
        "runtime",
    ]
    stage = final_stage(DOCKERFILE)
    user = only(stage, "USER").argument
    assert user.split(":")[0] not in {"0", "root"}
    assert any(item.keyword == "COPY" and "--from=build" in item.argument for item in stage)
    assert not any("pip" in item.argument for item in stage if item.keyword == "RUN")


def test_compose_serves_rest_and_grpc_on_their_default_ports() -> None:
    rest, grpc = _compose_service("rest"), _compose_service("grpc")
    rest_args, grpc_args = _parse(rest["command"]), _parse(grpc["command"])
    assert (rest_args.kind, grpc_args.kind) == ("rest", "grpc")
    assert rest_args.port == _default_port("rest")
    assert grpc_args.port == _default_port("grpc") == 50051
    assert _container_ports(rest) == {rest_args.port}
    assert _container_ports(grpc) == {grpc_args.port}
    assert "healthcheck" not in rest  # the image's own: GET /healthz on the REST port
    health = " ".join(grpc["healthcheck"]["test"])
    assert f"'127.0.0.1:{grpc_args.port}'" in health
    assert "HealthStub" in health


def test_compose_mlserver_is_the_tested_version_on_its_own_ports() -> None:
    mlserver = _compose_service("mlserver")
    assert mlserver["build"]["dockerfile"] == str(
        MLSERVER_DOCKERFILE.relative_to(COMPOSE.parents[1])
    )
    stage = final_stage(MLSERVER_DOCKERFILE)
    settings = env(stage)
    http, grpc = int(settings["MLSERVER_HTTP_PORT"]), int(settings["MLSERVER_GRPC_PORT"])
    assert _container_ports(mlserver) == {http, grpc}
    assert {http, grpc} <= exposed(stage)
    probe = url_in(" ".join(healthcheck_command(stage)))
    assert (probe.port, probe.path) == (http, f"/v2/models/{settings['MLSERVER_MODEL_NAME']}/ready")
    requirements = next(
        item for item in instructions(MLSERVER_DOCKERFILE) if item.keyword == "COPY"
    )
    assert requirements.argument.split()[0] == "tests/servers/requirements-mlserver.txt"


def test_compose_hands_the_exported_model_to_mlserver() -> None:
    export, mlserver = _compose_service("digits-model"), _compose_service("mlserver")
    volume, export_dir = export["volumes"][0].split(":")
    assert f"export_digits('{export_dir}')" in export["entrypoint"][-1]
    mounted = [entry.split(":") for entry in mlserver["volumes"]]
    assert mounted == [[volume, "/models", "ro"]]
    uri = env(final_stage(MLSERVER_DOCKERFILE))["MLSERVER_MODEL_URI"]
    assert uri == "/models/digits.joblib"  # export_digits writes digits.joblib
    assert mlserver["depends_on"] == {
        "digits-model": {"condition": "service_completed_successfully"}
    }
    # the export folder is in the image, owned by its user (a new volume takes its owner)
    assert any(
        export_dir in item.argument for item in final_stage(DOCKERFILE) if item.keyword == "RUN"
    )


def _port_named(rest: dict[str, Any], name: str) -> int:
    ports = {port["name"]: port["containerPort"] for port in rest["ports"]}
    port: int = ports[name]
    return port


def test_deployment_probes_and_port_are_the_rest_targets(get_routes: set[str]) -> None:
    deployment = manifest("Deployment")
    rest = container(deployment)
    args = _parse(rest["args"])
    assert (args.kind, args.host) == ("rest", "0.0.0.0")
    assert _port_named(rest, "http") == args.port == _default_port("rest")
    probes = {
        kind: rest[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["path"] in get_routes
        assert _port_named(rest, probe["port"]) == args.port
    # the endpoints drop the pod (pre-stop pause), then the server drains, before any SIGKILL
    pause_s = rest["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > pause_s + GRACEFUL_SHUTDOWN_S


def test_deployment_resources_are_the_named_hardware_profile() -> None:
    """CPUs of the profile = the CPU request and limit; its workers = ``--workers``; its thread
    cap = the math-library variables (what ``servelab bench`` sets for that profile)."""
    deployment = manifest("Deployment")
    name = deployment["metadata"]["annotations"][PROFILE_ANNOTATION]
    profiles = {profile.name: profile for profile in load_config(PROFILES).profiles}
    profile: HardwareProfile = profiles[name]
    rest = container(deployment)
    assert profile.cpus is not None
    cpus = str(len(profile.cpus))
    assert rest["resources"]["requests"]["cpu"] == rest["resources"]["limits"]["cpu"] == cpus
    assert _parse(rest["args"]).workers == profile.workers
    variables = {item["name"]: item["value"] for item in rest["env"]}
    assert profile.server_env()
    assert variables.items() >= profile.server_env().items()
    assert option(container(manifest("Job"))["args"], "--profile") == name


def test_service_selects_the_deployments_pods_on_its_port() -> None:
    deployment, service = manifest("Deployment"), manifest("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    (port,) = service["spec"]["ports"]
    assert _port_named(container(deployment), port["targetPort"]) == _default_port("rest")


def test_hpa_scales_the_deployment_on_cpu_it_requests() -> None:
    deployment, hpa = manifest("Deployment"), manifest("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in container(deployment)["resources"]["requests"]  # utilisation needs it
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_job_loads_the_service_with_thresholds() -> None:
    job, service = manifest("Job"), manifest("Service")
    argv = container(job)["args"]
    args = _parse(argv)
    assert (args.command, args.target, args.allow_remote) == ("run", "rest", True)
    url = url_in(args.url)
    (port,) = service["spec"]["ports"]
    assert (url.hostname, url.port, url.path) == (service["metadata"]["name"], port["port"], "")
    thresholds = parse_thresholds(args.threshold, allow_relative=False)
    assert {threshold.metric for threshold in thresholds} >= {"p99", "fail_ratio"}
    (wait,) = pod_spec(job)["initContainers"]
    probe = url_in(wait["command"][-1])
    assert (probe.hostname, probe.port, probe.path) == (url.hostname, url.port, "/readyz")
    assert job["spec"]["backoffLimit"] == 0  # a breached gate fails the Job, not retried


def test_the_workloads_run_the_built_image_as_its_non_root_user() -> None:
    """The pods run the image compose builds from the Dockerfile, as the Dockerfile's USER."""
    image = _compose_service("rest")["image"]
    assert _compose_service("rest")["build"]["dockerfile"] == DOCKERFILE.name
    uid, _, gid = only(final_stage(DOCKERFILE), "USER").argument.partition(":")
    for kind in ("Deployment", "Job"):
        spec = pod_spec(manifest(kind))
        assert spec["securityContext"]["runAsNonRoot"] is True
        user = spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]
        assert user == (int(uid), int(gid)), kind
        for item in spec["containers"] + spec.get("initContainers", []):
            assert item["image"] == image, kind
            assert item["securityContext"]["allowPrivilegeEscalation"] is False, kind
