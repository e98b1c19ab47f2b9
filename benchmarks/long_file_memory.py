"""Peak memory of tagging one long file: does a 2-hour recording stream through in blocks?

Writes a long FLAC (a tone plus noise, 44.1 kHz stereo by default) block by block in a child
process, so that neither the generator nor this process ever holds the recording; then loads a
model, notes the resident set size, tags the file the way ``musictag tag`` does
(:meth:`Tagger.tag_many`) and prints the peak resident set size against that baseline and against
what the recording would take as one float32 mono array.

    .venv/bin/python benchmarks/long_file_memory.py                 # 2 h, the tiny test model
    .venv/bin/python benchmarks/long_file_memory.py --arch default  # the 3^9 SampleCNN, random
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BLOCK_S = 10.0
#: A 3^5 SampleCNN over 6561 samples at 8 kHz, as in tests/conftest.py.
TINY_ARCH = {"name": "samplecnn", "m": 3, "n_modules": 5, "first_filter": 27, "first_stride": 27,
             "first_channels": 8, "module_channels": [8, 8, 8, 16, 16], "dense_channels": 16,
             "n_classes": 10, "dropout": 0.5}


def generate(path: Path, *, seconds: float, rate_hz: int, channels: int) -> None:
    """A 1 kHz tone plus noise, written ``BLOCK_S`` at a time (never the whole file at once)."""
    import soundfile

    rng = np.random.default_rng(0)
    block = int(BLOCK_S * rate_hz)
    total = int(seconds * rate_hz)
    with soundfile.SoundFile(str(path), "w", rate_hz, channels, subtype="PCM_16",
                             format="FLAC") as out:
        for start in range(0, total, block):
            n = min(block, total - start)
            t = (start + np.arange(n)) / rate_hz
            signal = 0.3 * np.sin(2 * np.pi * 1000.0 * t)
            noisy = signal[:, None] + 0.05 * rng.standard_normal((n, channels))
            out.write(noisy.astype(np.float32))


def rss_mib() -> float:
    """The current resident set size (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_card(folder: Path, arch: str) -> Path:
    """A card plus seeded random weights: the tiny test model or the default 3^9 architecture."""
    import torch

    from musictag.nets import build_model
    from musictag.weights import save_weights

    if arch == "tiny":
        card = {"name": "bench-tiny", "arch": TINY_ARCH,
                "labels": [f"tag{i:02d}" for i in range(10)], "sample_rate_hz": 8000,
                "window_samples": 6561}
    else:
        card = json.loads((REPO / "models" / "samplecnn.json").read_text())
        card["name"] = "bench-samplecnn-random"
    card.update(weights={"file": f"{card['name']}.safetensors"}, averaging={"rule": "consecutive"})
    torch.manual_seed(0)
    model = build_model(card["arch"]).eval()
    save_weights(folder / card["weights"]["file"],
                 {k: v.numpy() for k, v in model.state_dict().items()}, card)
    path = folder / f"{card['name']}.json"
    path.write_text(json.dumps(card))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--rate", type=int, default=44100, help="the file's sample rate, Hz")
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--arch", choices=("tiny", "default"), default="tiny")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    seconds = args.hours * 3600
    if args.generate:
        generate(args.generate, seconds=seconds, rate_hz=args.rate, channels=args.channels)
        return

    with tempfile.TemporaryDirectory(prefix="musictag-bench-") as tmp:
        folder = Path(tmp)
        audio_path = folder / "long.flac"
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--generate", str(audio_path),
                        "--hours", str(args.hours), "--rate", str(args.rate),
                        "--channels", str(args.channels)], check=True)
        size_mib = audio_path.stat().st_size / 2**20
        print(f"generated {seconds / 3600:.2f} h, {args.rate} Hz, {args.channels} ch FLAC: "
              f"{size_mib:.0f} MiB in {time.perf_counter() - started:.0f} s")

        from musictag.inference import load_tagger

        tagger = load_tagger(str(write_card(folder, args.arch)), batch_size=args.batch_size,
                             device="cpu", backend="torch")
        baseline, baseline_peak = rss_mib(), peak_rss_mib()
        started = time.perf_counter()
        [(_, result)] = list(tagger.tag_many([audio_path]))
        elapsed = time.perf_counter() - started
        peak = peak_rss_mib()

    rate = tagger.card.sample_rate_hz
    whole_file_mib = seconds * args.rate * 4 / 2**20
    whole_model_mib = seconds * rate * 4 / 2**20
    print(f"tagged with {tagger.card.name} ({rate} Hz, {tagger.card.window_samples}-sample "
          f"windows): {result.n_windows} windows, {result.duration_s / 3600:.2f} h decoded "
          f"in {elapsed:.0f} s")
    print(f"RSS after import and model load (baseline): {baseline:8.0f} MiB "
          f"(peak so far {baseline_peak:.0f} MiB)")
    print(f"peak RSS after tagging:                     {peak:8.0f} MiB "
          f"(+{peak - baseline:.0f} MiB over the baseline)")
    print(f"the recording as one float32 mono array:    {whole_file_mib:8.0f} MiB at "
          f"{args.rate} Hz, {whole_model_mib:.0f} MiB at {rate} Hz")


if __name__ == "__main__":
    main()
