"""Disk size of the tagging-only install (issue 6; not part of the suite).

Sizes are in MB of 10^6 bytes, allocated blocks as `du` counts them. The target is a virtual
environment under 250 MB with `pip install musictag` and no extras. One
run builds the project's wheel once and installs it into fresh virtual environments:

1. an empty venv (Python's own pip and setuptools): the baseline every figure is set against;
2. `pip install musictag`: pip also writes the bytecode of every module it installs;
3. `pip install --no-compile musictag`: no bytecode up front; Python writes it for the modules
   a run imports, so the size is measured again after a `musictag tag` of real audio.

It checks that the install tags without torch and prints the largest packages. It needs the
package index (or pip's cache) for the dependencies.

    python benchmarks/install_size.py   # a few minutes: pip fetches the dependencies
    python benchmarks/install_size.py --audio examples/demo.ogg
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
TARGET_MB = 250.0


def size_mb(path: Path) -> float:
    """Allocated size like `du -s`, so that it matches what a disk quota sees."""
    blocks = sum(entry.lstat().st_blocks for entry in path.rglob("*"))
    return blocks * 512 / 1e6


def run(command: list[str]) -> None:
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def make_venv(folder: Path) -> Path:
    run([sys.executable, "-m", "venv", str(folder)])
    return folder / "bin" / "python"


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def largest_packages(venv: Path, count: int) -> list[tuple[str, float]]:
    entries = [(entry.name, size_mb(entry) if entry.is_dir() else entry.lstat().st_size / 1e6)
               for entry in site_packages(venv).iterdir()]
    return sorted(entries, key=lambda item: -item[1])[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, default=PROJECT / "examples" / "demo.ogg",
                        help="A file to tag in the --no-compile environment.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="musictag-size-") as scratch:
        root = Path(scratch)
        run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "wheel"),
             str(PROJECT)])
        wheel = next((root / "wheel").glob("musictag-*.whl"))

        make_venv(root / "empty")
        baseline = size_mb(root / "empty")

        python = make_venv(root / "compiled")
        run([str(python), "-m", "pip", "install", "-q", str(wheel)])
        compiled = size_mb(root / "compiled")

        python = make_venv(root / "lean")
        run([str(python), "-m", "pip", "install", "-q", "--no-compile", str(wheel)])
        lean_installed = size_mb(root / "lean")
        # As on a user's machine: Python caches the bytecode of what it imports.
        writes_bytecode = {key: value for key, value in os.environ.items()
                           if key != "PYTHONDONTWRITEBYTECODE"}
        tagged = subprocess.run([str(root / "lean" / "bin" / "musictag"), "tag", str(args.audio),
                                 "--backend", "onnx", "--format", "jsonl"], env=writes_bytecode,
                                check=True, capture_output=True, text=True).stdout
        lean_after_run = size_mb(root / "lean")
        has_torch = subprocess.run([str(python), "-c", "import torch"],
                                   capture_output=True).returncode == 0

        print(f"wheel: {wheel.name}, {wheel.stat().st_size / 1e6:.1f} MB")
        print(f"empty venv (pip, setuptools; the baseline): {baseline:.0f} MB")
        for label, megabytes in (
                ("pip install musictag", compiled),
                ("pip install --no-compile musictag", lean_installed),
                ("  the same after one `musictag tag`", lean_after_run)):
            print(f"{label}: {megabytes:.0f} MB venv, musictag adds {megabytes - baseline:.0f} MB;"
                  f" {megabytes / TARGET_MB:.2f} x the {TARGET_MB:.0f} MB target")
        print(f"torch importable in the tagging-only venv: {has_torch}")
        print(f"tag output: {tagged.strip()[:120]}")
        print("largest entries of site-packages (--no-compile, after the run):")
        for name, megabytes in largest_packages(root / "lean", 10):
            print(f"  {name:<28} {megabytes:6.1f} MB")


if __name__ == "__main__":
    main()
