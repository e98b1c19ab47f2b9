"""Whole ``musictag tag`` processes against the 400 MB bound, and against the musicnn package.

Runs each command as its own process (start-up, model load, decoding and writing included) and
prints its wall time and peak resident set size (the child's ``ru_maxrss``), as a fraction of
issue 22's bound of 400 MB, for: a folder of tracks, one 30 s track, and one long file
(generated block by block, so the generator never holds it). With ``--musicnn-python``, the
musicnn package (Pons & Serra 2019, TensorFlow) tags the same folder and the same track, and
the ratios musicnn / musictag are printed. musicnn is never a dependency of musictag: it needs
its own venv (its metadata pins numpy<1.17, which does not build on Python 3.11, so it goes in
without dependencies, and TensorFlow must be older than 2.16, whose Keras 3 lacks the layers it
uses)::

    python3.11 -m venv /tmp/musicnn-venv
    /tmp/musicnn-venv/bin/pip install --no-deps musicnn==0.1.0
    /tmp/musicnn-venv/bin/pip install "tensorflow-cpu<2.16" librosa "numpy<2"

    .venv/bin/python benchmarks/whole_runs.py --folder ~/30s-tracks \\
        --musicnn-python /tmp/musicnn-venv/bin/python
    .venv/bin/python benchmarks/whole_runs.py            # 24 generated tracks, no musicnn

Without a working musicnn the script says so and measures musictag alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from long_file_memory import generate

BOUND_MB = 400
AUDIO = (".flac", ".ogg", ".wav", ".mp3")
#: musicnn's tagger over the files named on its command line, as its README uses it.
MUSICNN = """import sys
from musicnn.tagger import top_tags
for path in sys.argv[1:]:
    top_tags(path, model="MTT_musicnn", topN=5, print_tags=False)
"""


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process; its output is discarded."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    error = process.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:4]} failed: {error.strip().splitlines()[-1:]}")
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


def median_run(command: list[str], repeats: int) -> tuple[float, float]:
    runs = [run(command) for _ in range(repeats)]
    return statistics.median(w for w, _ in runs), max(r for _, r in runs)


def musictag(paths: list[Path], precision: str) -> list[str]:
    return [sys.executable, "-m", "musictag", "tag", *map(str, paths), "-f", "jsonl", "-q",
            "--precision", precision]


def musicnn_works(python: str | None) -> str | None:
    """None when ``python`` imports musicnn's tagger, else why not."""
    if not python:
        return "no --musicnn-python given"
    try:
        subprocess.run([python, "-c", "import musicnn.tagger"], check=True, capture_output=True,
                       timeout=300)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        return f"{python} cannot import musicnn.tagger ({detail.decode().strip()[-200:] or error})"
    return None


def line(name: str, wall: float, rss: float) -> str:
    return f"{name:<44}{wall:>8.2f} s{rss:>8.0f} MB  = {rss / BOUND_MB:.2f} of {BOUND_MB} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, help="folder of tracks (default: 24 generated "
                                                    "30 s tracks)")
    parser.add_argument("--long-minutes", type=float, default=20.0)
    parser.add_argument("--precision", action="append",
                        help="musictag --precision to run (repeatable; default auto and fp32)")
    parser.add_argument("--repeats", type=int, default=1, help="median of this many runs")
    parser.add_argument("--musicnn-python", help="python of a venv with musicnn (docstring)")
    args = parser.parse_args()
    precisions = args.precision or ["auto", "fp32"]
    with tempfile.TemporaryDirectory(prefix="musictag-runs-") as scratch:
        scratch = Path(scratch)
        folder = args.folder
        if folder is None:
            folder = scratch / "tracks"
            folder.mkdir()
            for i in range(24):
                generate(folder / f"track{i:02d}.flac", seconds=30.0, rate_hz=44100, channels=2)
        tracks = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO)
        long_file = scratch / "long.flac"
        generate(long_file, seconds=60 * args.long_minutes, rate_hz=44100, channels=2)
        print(f"{len(tracks)} tracks in {folder}; a {args.long_minutes:g} min FLAC; "
              f"{os.cpu_count()} CPUs; median of {args.repeats} run(s)")
        ours = {}
        for precision in precisions:
            for name, paths in (("folder", [folder]), ("one track", tracks[:1]),
                                (f"{args.long_minutes:g} min file", [long_file])):
                wall, rss = median_run(musictag(paths, precision), args.repeats)
                ours[precision, name] = wall, rss
                print(line(f"musictag --precision {precision}, {name}", wall, rss), flush=True)
        why_not = musicnn_works(args.musicnn_python)
        if why_not:
            print(f"musicnn: not measured: {why_not}")
            return
        command = [args.musicnn_python, "-c", MUSICNN]
        for name, paths in (("folder", tracks), ("one track", tracks[:1])):
            wall, rss = median_run([*command, *map(str, paths)], args.repeats)
            print(line(f"musicnn MTT_musicnn, {name}", wall, rss), flush=True)
            for precision in precisions:
                our_wall, our_rss = ours[precision, name]
                print(f"  musictag --precision {precision}: {wall / our_wall:.2f}x faster "
                      f"(target 5x), {our_rss / rss:.2f} of musicnn's memory")


if __name__ == "__main__":
    main()
