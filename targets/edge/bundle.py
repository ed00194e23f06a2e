"""``servelab edge bundle``: the edge runtime, a stdlib model and its config in one zipapp.

The archive holds the edge runtime, the stdlib-only ``targets`` modules it imports, a minimal
``targets/__init__.py`` of its own (so the bundle never depends on what the package ``__init__``
grows to import), the baked-in config as JSON, and a ``__main__.py``; ``python -I -S edge.pyz``
then behaves like ``servelab edge run`` with that config, and its options override it.

Sources are shipped, not bytecode, so one archive runs on any Python >= 3.11. Entries carry a fixed
timestamp and mode and are written in a fixed order: the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Final

from targets.edge.config import EdgeConfig
from targets.edge.remote import RemoteClient
from targets.errors import InputError
from targets.files import user_path, write_atomic
from targets.spec import is_stdlib_model, load_model

# The import closure of targets.edge.runtime (a test runs the archive on a bare Python to prove
# it is complete). Paths relative to the ``targets`` package.
BUNDLED_MODULES: Final = (
    "edge/__init__.py",
    "edge/breaker.py",
    "edge/cache.py",
    "edge/config.py",
    "edge/quantize.py",
    "edge/remote.py",
    "edge/runtime.py",
    "errors.py",
    "logs.py",
    "models.py",
    "schema.py",
    "service.py",
    "spec.py",
    "units.py",
)
CONFIG_ENTRY: Final = "targets/edge/bundle_config.json"
ZIP_EPOCH: Final = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
SHEBANG: Final = b"#!/usr/bin/env python3\n"

PACKAGE_INIT: Final = '''\
"""servelab targets, as shipped in an edge bundle: the stdlib-only core and the edge runtime."""
'''

MAIN: Final = '''\
"""servelab edge bundle: JSON requests on stdin, canonical responses on stdout."""

import sys

if sys.version_info < (3, 11):
    sys.exit("edge: this bundle needs Python >= 3.11")

import json
from importlib.resources import files

from targets.edge.runtime import run_bundled

config = json.loads(files("targets.edge").joinpath("bundle_config.json").read_bytes())
sys.exit(run_bundled(config, sys.argv[1:]))
'''


def check_bundleable(config: EdgeConfig) -> None:
    """``InputError`` (one line, naming the option) unless ``config`` can ship in a bundle."""
    if config.runtime != "python":
        raise InputError("a zipapp computes in Python; for the WebAssembly module use --wasm")
    if not is_stdlib_model(config.model):
        raise InputError(
            f"--model {config.model!r} cannot be bundled: an edge bundle runs on a bare Python, "
            "so only 'reference' and 'synthetic:...' models ship"
        )
    load_model(config.model)  # a malformed synthetic SPEC fails now, not on the gateway
    if config.remote:
        RemoteClient(config.remote, timeout_s=config.timeout_ms / 1e3).close()  # URL check only


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so the mode bits below mean the same everywhere
    info.external_attr = 0o100644 << 16
    return info


def build_archive(config: EdgeConfig) -> bytes:
    """The zipapp's bytes (shebang line, then the zip) for a bundleable ``config``."""
    check_bundleable(config)
    package_dir = Path(__file__).resolve().parent.parent
    contents: dict[str, bytes] = {
        "__main__.py": MAIN.encode(),
        "targets/__init__.py": PACKAGE_INIT.encode(),
        CONFIG_ENTRY: (json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n").encode(),
    }
    for module in BUNDLED_MODULES:
        contents[f"targets/{module}"] = (package_dir / module).read_bytes()
    buffer = io.BytesIO()
    buffer.write(SHEBANG)  # zip readers find the archive from its end, so a prefix is fine
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(contents):
            archive.writestr(_entry(name), contents[name])
    return buffer.getvalue()


def write_bundle(out: str | os.PathLike[str], config: EdgeConfig) -> int:
    """Write the zipapp to ``out`` atomically, executable; returns its size in bytes."""
    if Path(out).is_dir():
        raise InputError(f"--out {str(out)!r} is a directory, expected a file")
    data = build_archive(config)
    with user_path("write", "--out", out):
        write_atomic(out, data)
        os.chmod(out, 0o755)  # noqa: S103 - a program to run, as zipapp makes them
    return len(data)


def main(args: argparse.Namespace) -> int:
    """``servelab edge bundle``: bad options raise ``InputError``/``SpecError`` for the CLI."""
    config = EdgeConfig.from_mapping(vars(args))
    if getattr(args, "wasm", False):
        from targets.edge.web import write_web_bundle

        web = write_web_bundle(args.out, config)
        print(
            f"servelab: wrote {', '.join(sorted(web.files))} to {args.out} (model "
            f"{web.manifest['model']}, quant {web.manifest['quantization']}); in a page served "
            f"over http: import {{ loadEdgeModel }} from './edge-model.mjs'",
            file=sys.stderr,
        )
        return 0
    size_bytes = write_bundle(args.out, config)
    print(
        f"servelab: wrote {args.out} ({size_bytes} bytes; model {config.model}, "
        f"remote {config.remote or 'none'}, quant {config.quant}); run: python -I -S {args.out}",
        file=sys.stderr,
    )
    return 0
