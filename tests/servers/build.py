"""Build one virtual environment per third-party server in ``.servers/<name>/`` (make servers).

Each environment comes from ``tests/servers/requirements-<name>.txt``. Its stamp file holds the
SHA-256 of that file, so an environment is rebuilt only when its requirements change (not when a
checkout touches the file's mtime), and a second run does nothing. Environments are built one at a
time: the machine has two cores and others use them. Stdlib only: it runs before any venv exists.

    python3 tests/servers/build.py [NAME ...]     # default: every requirements-*.txt here
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_ENVS_DIR = ROOT / ".servers"
STAMP_NAME = ".requirements.sha256"
PIP_QUIET = ["--quiet", "--disable-pip-version-check", "--no-input"]


def requirements_path(name: str) -> Path:
    return HERE / f"requirements-{name}.txt"


def known_names() -> list[str]:
    prefix, suffix = "requirements-", ".txt"
    return sorted(path.name[len(prefix) : -len(suffix)] for path in HERE.glob("requirements-*.txt"))


def requirements_hash(name: str) -> str:
    return hashlib.sha256(requirements_path(name).read_bytes()).hexdigest()


def env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def is_current(env_dir: Path, digest: str) -> bool:
    stamp = env_dir / STAMP_NAME
    return env_python(env_dir).exists() and stamp.exists() and stamp.read_text().strip() == digest


def disk_bytes(directory: Path) -> int:
    """Allocated bytes under ``directory``, as ``du -s`` counts them (each inode once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _dirs, files in os.walk(directory):
        for name in files:
            info = os.lstat(os.path.join(folder, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def build(name: str, envs_dir: Path) -> None:
    env_dir = envs_dir / name
    digest = requirements_hash(name)
    if is_current(env_dir, digest):
        print(f"servers: {name} is up to date ({env_dir})")
        return
    print(f"servers: building {name} in {env_dir} from {requirements_path(name).name}", flush=True)
    shutil.rmtree(env_dir, ignore_errors=True)
    started_s = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    pip = [str(env_python(env_dir)), "-m", "pip"]
    subprocess.run([*pip, "install", *PIP_QUIET, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", *PIP_QUIET, "-r", str(requirements_path(name))], check=True)
    install_s = time.monotonic() - started_s
    freeze = subprocess.run(
        [*pip, "freeze", "--all"], check=True, capture_output=True, text=True
    ).stdout
    (env_dir / "freeze.txt").write_text(freeze)
    size_bytes = disk_bytes(env_dir)
    record = {"name": name, "install_s": round(install_s, 1), "size_bytes": size_bytes}
    (env_dir / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    # The stamp goes last: an interrupted build is rebuilt next time.
    (env_dir / STAMP_NAME).write_text(digest + "\n")
    print(f"servers: {name} built in {install_s:.0f} s, {size_bytes / 2**20:.0f} MiB", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"servers to build (default: {known_names()})")
    parser.add_argument("--envs-dir", type=Path, default=DEFAULT_ENVS_DIR)
    args = parser.parse_args(argv)
    names: list[str] = args.names or known_names()
    unknown = [name for name in names if not requirements_path(name).exists()]
    if unknown:
        parser.error(f"no requirements file for {unknown} (known: {known_names()})")
    args.envs_dir.mkdir(parents=True, exist_ok=True)
    # Two builds at once would delete each other's files: the second waits for the first.
    with open(args.envs_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in names:
            try:
                build(name, args.envs_dir)
            except subprocess.CalledProcessError as exc:
                print(f"servers: building {name} failed: {exc}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
