"""The README's "Layout" block matches the tree: every package and module is named in it, and
every module it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("targets", "loadtests", "reports")
UNLISTED = {"__init__.py", "__main__.py"}


def _layout_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Layout\n") :]
    return section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n") + 4)]


def _modules() -> list[Path]:
    return [
        path.relative_to(ROOT)
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name not in UNLISTED and "_pb2" not in path.name
    ]


def test_every_package_and_module_is_named() -> None:
    block = _layout_block()
    names = {word.rsplit("/", 1)[-1] for word in re.findall(r"[\w./]+", block)}
    missing = [str(module) for module in _modules() if module.name not in names]
    assert not missing, missing
    packages = {
        module.parent.name + "/" for module in _modules() if module.parent.name not in PACKAGES
    }
    assert not [package for package in packages if package not in block], packages


def test_every_module_named_exists() -> None:
    names = {module.name for module in _modules()} | {"locustfile.py"}
    named = set(re.findall(r"\b(\w+\.py)\b", _layout_block()))
    assert named - names == set(), named - names
