"""The ray engine against the local engine on the same folder (issue 25; not part of the suite).

One run generates a folder of tracks (tones in noise, FLAC at 22.05 kHz) and prints:

1. end to end: ``musictag tag DIR --output FILE`` as a fresh process with ``--engine local`` and
   with ``--engine ray`` (which starts a local Ray on this machine's cores), wall seconds each and
   their ratio;
2. in one process with Ray already started, what the engine itself adds: the local
   ``tag_records`` against ``musictag.scale.tag_outcomes`` (actors started, the model loaded in
   each, the Dataset scheduled and streamed back), wall seconds and the ratio;
3. whether both engines gave the same tags for every file.

A ratio over 1 is the ray engine's overhead on one machine; it pays off only across machines.

    python benchmarks/ray_engine.py                          # 32 files of 30 s, default model
    python benchmarks/ray_engine.py --files 16 --seconds 10  # a quick look
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from musictag.inference import default_threads, load_tagger
from musictag.library.runlog import read_records
from musictag.output import tag_records
from musictag.registry import DEFAULT_MODEL

RATE_HZ = 22050


def make_folder(folder: Path, *, files: int, seconds: float) -> list[Path]:
    """``files`` FLAC tracks of ``seconds``: a tone in noise, each at its own pitch."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    paths = []
    for number in range(files):
        signal = 0.3 * np.sin(2 * np.pi * (110.0 + 37.0 * number) * t)
        signal += 0.05 * rng.standard_normal(len(t))
        path = folder / f"track{number:04d}.flac"
        soundfile.write(str(path), signal.astype(np.float32), RATE_HZ)
        paths.append(path)
    return paths


def run_cli(folder: Path, output: Path, model: str, *engine: str) -> float:
    """Wall seconds of ``musictag tag FOLDER --output OUTPUT`` in a fresh process."""
    command = [sys.executable, "-m", "musictag", "tag", str(folder), "--model", model,
               "--output", str(output), "--quiet", *engine]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "RAY_DISABLE_IMPORT_WARNING": "1"})
    return time.perf_counter() - start


def tags_by_path(records) -> dict[str, list[str]]:
    return {record["path"]: [item["tag"] for item in record["tags"]] for record in records}


def in_process(paths: list[Path], model: str) -> tuple[float, float, bool]:
    """Seconds of the local and the ray engine in this process, Ray started beforehand (both
    load the model inside the timing), and whether their tags agree."""
    from musictag.scale import connect, tag_outcomes

    connect()
    start = time.perf_counter()
    local = tags_by_path(record for _, record in tag_records(load_tagger(model), paths))
    local_s = time.perf_counter() - start
    start = time.perf_counter()
    remote = tags_by_path(record for _, record in tag_outcomes(paths, model=model))
    return local_s, time.perf_counter() - start, remote == local


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "music"
        folder.mkdir()
        paths = make_folder(folder, files=args.files, seconds=args.seconds)
        print(f"{args.files} files of {args.seconds:g} s, model {args.model}, "
              f"{os.cpu_count()} cores ({default_threads()} compute threads locally)")
        logs = {engine: Path(temporary) / f"{engine}.jsonl" for engine in ("local", "ray")}
        local_s = run_cli(folder, logs["local"], args.model)
        ray_s = run_cli(folder, logs["ray"], args.model, "--engine", "ray")
        same = tags_by_path(read_records(logs["local"])) == tags_by_path(read_records(logs["ray"]))
        print(f"end to end, fresh processes: local {local_s:.1f} s, ray {ray_s:.1f} s "
              f"(ratio {ray_s / local_s:.2f}); same tags: {same}")
        local_s, ray_s, same = in_process(paths, args.model)
        print(f"in one process, Ray already up: local {local_s:.1f} s, ray {ray_s:.1f} s "
              f"(ratio {ray_s / local_s:.2f}); same tags: {same}")


if __name__ == "__main__":
    main()
