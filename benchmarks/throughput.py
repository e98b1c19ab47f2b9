"""Tagging throughput measured against this machine's own limit (issue 6; not part of the suite).

One run prints:
1. the fp32 and bf16 matmul peak (GFLOP/s) of torch on large square matrices, with the threads
   tagging uses;
2. the FLOPs of one window of the 3^9 SampleCNN, counted from its convolutions and linear layers;
3. windows/s and audio-seconds per wall-second for torch eager fp32, torch bf16 autocast,
   onnxruntime fp32 and the int8 exports (front end in fp32; front end and first block in fp32)
   at batch sizes 1, 8 and 32, each as a fraction of the
   matching peak (fp32 paths against the fp32 peak, bf16 against bf16, int8 against fp32);
4. how far bf16 and int8 scores are from fp32 on real music (max |diff| and same top-5), the
   int8 ranges calibrated on other tracks than those measured;
5. end-to-end `musictag tag` over a folder of generated 30 s files (tracks/s, the child's peak
   RSS) against the pure-inference rate of the same backend and batch size.

``--profile`` instead prints, in about a minute, the peaks, the bf16 path (torch, channels-last
conv2d form, BatchNorm folded: what ``--precision bf16`` and, on AMX CPUs, ``auto`` run) and
onnxruntime fp32 at batch 8 as fractions of them, and a torch.profiler table of one bf16 batch
by operator and input shape (one row per layer kind and size).

The default card's architecture runs with models/samplecnn.safetensors when it exists and seeded
random weights otherwise (then the accuracy lines measure the arithmetic, not a trained model).

    python benchmarks/throughput.py --music ~/corpus   # about 5 minutes on 2 cores
    python benchmarks/throughput.py --quick            # about 2 minutes, generated audio only
    python benchmarks/throughput.py --profile          # about 1 minute: bf16 per-layer profile
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile
import torch
from torch import nn

from musictag.backends.onnx_backend import OnnxBackend
from musictag.backends.torch_backend import TorchBackend
from musictag.export import difference, export_onnx
from musictag.inference import card_windows, default_threads
from musictag.nets import build_model
from musictag.registry import DEFAULT_MODEL, ModelCard, get_card
from musictag.weights import save_weights

REPO = Path(__file__).resolve().parents[1]
ISSUE_GFLOP_PER_WINDOW = 3.46


def matmul_peak_gflops(dtype: torch.dtype, *, n: int, seconds: float) -> float:
    """Best of several timed torch ``a @ b`` of ``n x n`` matrices (2 n^3 FLOPs each)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return _best_rate(lambda: a @ b, 2 * n**3, seconds)


def numpy_sgemm_gflops(*, n: int, seconds: float) -> float:
    """The same for numpy's BLAS (OpenBLAS in its wheels): on AMD CPUs torch's MKL is slower."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    return _best_rate(lambda: a @ a, 2 * n**3, seconds)


def _best_rate(call: Callable[[], object], flop: float, seconds: float) -> float:
    call()
    best, spent, calls = 0.0, 0.0, 0
    while calls < 2 or spent < seconds:
        start = time.perf_counter()
        call()
        took = time.perf_counter() - start
        spent, calls = spent + took, calls + 1
        best = max(best, flop / took / 1e9)
    return best


def count_gflop(model: nn.Module, window_samples: int) -> float:
    """FLOPs of one window: 2 per multiply-accumulate of every Conv1d and Linear."""
    macs = []

    def conv(module: nn.Conv1d, _, output: torch.Tensor) -> None:
        per_output = module.in_channels // module.groups * module.kernel_size[0]
        macs.append(output.numel() * per_output)

    def linear(module: nn.Linear, _, output: torch.Tensor) -> None:
        macs.append(output.numel() * module.in_features)

    hooks = [m.register_forward_hook(conv) for m in model.modules() if isinstance(m, nn.Conv1d)]
    hooks += [m.register_forward_hook(linear) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.inference_mode():
        model(torch.zeros(1, window_samples))
    for hook in hooks:
        hook.remove()
    return 2 * sum(macs) / 1e9


def prepare_model(folder: Path) -> tuple[ModelCard, Path, str]:
    """The default card with its shipped weights, or with seeded random ones written here.

    Random weights are He-initialised without biases: torch's default initialisation lets the
    biases swamp the input, so every track would get the same scores and the accuracy lines
    would compare constants.
    """
    card = get_card(DEFAULT_MODEL)
    shipped = (card.home or REPO / "models") / card.weights["file"]
    if shipped.is_file():
        return card, shipped, f"trained weights ({shipped.name})"
    torch.manual_seed(0)
    model = build_model(card.arch).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv1d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    module.bias.zero_()
    data = card.to_dict()
    weights = folder / "samplecnn-random.safetensors"
    save_weights(weights, {k: v.numpy() for k, v in model.state_dict().items()}, data)
    return ModelCard.from_dict(data, home=folder), weights, "seeded random weights (no " \
        f"{shipped.name} yet)"


def real_music(folder: Path | None, limit: int) -> list[Path]:
    """Songs from ``folder`` (files over 500 kB), spread over its subfolders."""
    if folder is None or not folder.is_dir():
        return []
    files = sorted(p for p in folder.rglob("*")
                   if p.suffix.lower() in (".ogg", ".mp3", ".flac", ".wav")
                   and p.stat().st_size > 500_000)
    if not files:
        return []
    chosen = np.linspace(0, len(files) - 1, min(limit, len(files))).round().astype(int)
    return [files[i] for i in sorted(set(chosen))]


def timed_rate(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray,
               seconds: float) -> float:
    """Windows per second: one warm-up call, then calls until ``seconds`` (at least two)."""
    run(batch)
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < seconds:
        run(batch)
        calls += 1
    return calls * len(batch) / (time.perf_counter() - start)


INT8_VARIANTS = {"onnxruntime int8": 1, "onnxruntime int8 fp32-b1": 2}  # name -> fp32 layers


def backends(card: ModelCard, weights: Path, fp32_onnx: Path, int8_onnx: dict[str, Path],
             threads: int) -> dict[str, tuple[object, str]]:
    """name -> (backend, which peak it is measured against)."""
    torch.set_num_threads(threads)
    return {
        "torch eager fp32": (TorchBackend(card, weights, device="cpu"), "fp32"),
        "torch bf16 autocast": (TorchBackend(card, weights, device="cpu", precision="bf16"),
                                "bf16"),
        "onnxruntime fp32": (OnnxBackend(fp32_onnx, threads=threads), "fp32"),
        **{name: (OnnxBackend(path, threads=threads), "fp32") for name, path in
           int8_onnx.items()},
    }


def inference_table(engines: dict, card: ModelCard, gflop: float, peaks: dict[str, float],
                    batch_sizes: list[int], seconds: float) -> dict[tuple[str, int], float]:
    rng = np.random.default_rng(0)
    window_s = card.window_samples / card.sample_rate_hz
    rates = {}
    print(f"\n{'backend':<26}{'batch':>6}{'windows/s':>11}{'audio s/s':>11}{'GFLOP/s':>9}"
          f"{'of peak':>9}")
    for name, (engine, peak) in engines.items():
        for size in batch_sizes:
            batch = (0.1 * rng.standard_normal((size, card.window_samples))).astype(np.float32)
            rate = timed_rate(engine.predict, batch, seconds)
            rates[name, size] = rate
            print(f"{name:<26}{size:>6}{rate:>11.2f}{rate * window_s:>11.1f}"
                  f"{rate * gflop:>9.1f}{rate * gflop / peaks[peak]:>9.0%}", flush=True)
    return rates


def accuracy(engines: dict, card: ModelCard, files: list[Path], max_windows: int,
             trained: bool) -> None:
    """bf16 and int8 against torch fp32 on real music: per-window and per-track (mean) scores."""
    if not files:
        print("\naccuracy: no real music (pass --music DIR, e.g. the corpus of "
              "shared/corpus/fetch-music.sh)")
        return
    tracks = []
    for path in files:
        windows = []
        try:
            for window in card_windows(card, path):
                windows.append(window)
                if len(windows) == max_windows:
                    break
        except Exception as error:  # a corpus file the decoders refuse: skip it
            print(f"  skipped {path.name}: {error}")
            continue
        if windows:
            tracks.append(np.stack(windows).astype(np.float32))
    reference = [engines["torch eager fp32"][0].predict(w) for w in tracks]
    ref_tracks = np.stack([s.mean(axis=0) for s in reference])
    print(f"\naccuracy against torch fp32 on {len(tracks)} real tracks "
          f"({sum(len(w) for w in tracks)} windows, at most {max_windows} per track):")
    spread = ref_tracks.max(axis=1) - ref_tracks.min(axis=1)
    if not trained:
        print(f"  (random weights: a track's labels span {spread.mean():.3f} on average from "
              f"highest to lowest; a trained model's figures may differ)")
    for name in ("torch bf16 autocast", "onnxruntime fp32", *INT8_VARIANTS):
        scores = [engines[name][0].predict(w) for w in tracks]
        per_window = difference(np.concatenate(reference), np.concatenate(scores))
        per_track = difference(ref_tracks, np.stack([s.mean(axis=0) for s in scores]))
        print(f"  {name:<26} track scores: max |diff| {per_track.max_abs:.4f}, same top-5 on "
              f"{per_track.top5_agreement:.0%} of tracks; windows: max |diff| "
              f"{per_window.max_abs:.4f}")


def generate_library(folder: Path, n_tracks: int, seconds: float, rate: int) -> None:
    """Distinct 30 s FLAC files: chords of a few partials with noise, a different root each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    for i in range(n_tracks):
        root = 55 * 2 ** (rng.integers(0, 48) / 12)
        signal = sum(np.sin(2 * np.pi * root * k * t) / k for k in (1, 2, 3, 5))
        signal = 0.2 * signal + 0.02 * rng.standard_normal(len(t))
        soundfile.write(folder / f"track{i:03d}.flac", signal.astype(np.float32), rate)


def end_to_end(folder: Path, weights: Path, backend: str, batch_size: int,
               threads: int) -> tuple[float, float, int, int]:
    """(wall seconds, the child's peak RSS in MB, records written, windows they report) of one
    `musictag tag`.

    The peak is the child's VmHWM, read every 50 ms: its rusage would count the parent's
    memory too (the high-water mark carries over the fork to the exec).
    """
    command = [sys.executable, "-m", "musictag", "tag", str(folder), "--weights", str(weights),
               "--backend", backend, "--batch-size", str(batch_size), "--threads", str(threads),
               "--format", "jsonl", "--quiet"]
    peak_kb = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, cwd=REPO,
                                 env={**os.environ, "PYTHONPATH": str(REPO)})
        while child.poll() is None:
            peak_kb = max(peak_kb, _vm_hwm_kb(child.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        if child.returncode:
            raise RuntimeError(f"musictag tag failed: {err.read().decode()[-500:]}")
        records = [json.loads(line) for line in out.read().decode().splitlines()
                   if line.startswith("{")]
    return wall, peak_kb / 1024, len(records), sum(record["n_windows"] for record in records)


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass  # the child has just exited
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="shorter timings, 5 accuracy tracks, 24 end-to-end files")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--tracks", type=int, help="end-to-end files (default 100)")
    parser.add_argument("--music", type=Path, help="folder of real music for the accuracy "
                                                   "check and int8 calibration")
    parser.add_argument("--profile", action="store_true",
                        help="only the peaks, the bf16 path's rate and its per-layer profile")
    args = parser.parse_args()
    seconds = 1.5 if args.quick else 4.0
    n_tracks = args.tracks or (24 if args.quick else 100)
    torch.set_num_threads(args.threads)

    print(f"threads: {args.threads} (of {os.cpu_count()} CPUs); torch {torch.__version__}")
    peaks = {"fp32": matmul_peak_gflops(torch.float32, n=4096, seconds=seconds),
             "bf16": matmul_peak_gflops(torch.bfloat16, n=4096, seconds=seconds)}
    sgemm = numpy_sgemm_gflops(n=4096, seconds=seconds)
    print(f"torch matmul peak, 4096 x 4096: fp32 {peaks['fp32']:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16']:.1f} GFLOP/s (numpy/OpenBLAS fp32: {sgemm:.1f} GFLOP/s)")

    with tempfile.TemporaryDirectory(prefix="musictag-bench-") as scratch:
        scratch = Path(scratch)
        card, weights, origin = prepare_model(scratch)
        model = build_model(card.arch).eval()
        gflop = count_gflop(model, card.window_samples)
        print(f"model: {card.name} ({card.arch['name']} 3^{card.arch['n_modules']}), {origin}")
        print(f"counted: {gflop:.3f} GFLOP per {card.window_samples}-sample window "
              f"(issue: {ISSUE_GFLOP_PER_WINDOW})")
        if args.profile:
            bf16_profile(card, weights, peaks, gflop, args.threads, seconds)
            return

        n_measured = 5 if args.quick else 20
        music = real_music(args.music, n_measured)
        calibration = [p for p in real_music(args.music, 3 * n_measured) if p not in music][:24]
        start = time.perf_counter()
        fp32 = scratch / "fp32.onnx"
        int8 = {name: scratch / f"int8-{layers}.onnx" for name, layers in INT8_VARIANTS.items()}
        export_onnx(card, weights, fp32, audio=music[:4])
        for name, layers in INT8_VARIANTS.items():
            report = export_onnx(card, weights, int8[name], precision="int8", fp32_layers=layers,
                                 audio=calibration or _fallback_audio(scratch, card))
            print(f"{name}: at export, on its own held-out windows: "
                  f"{report.quantized.describe()}")
        print(f"exported fp32 and int8 in {time.perf_counter() - start:.0f} s")

        engines = backends(card, weights, fp32, int8, args.threads)
        rates = inference_table(engines, card, gflop, peaks, [1, 8, 32], seconds)
        best_exact = max((rate, name, size) for (name, size), rate in rates.items()
                         if "fp32" in name and name not in INT8_VARIANTS)
        print(f"\nfastest exact path: {best_exact[1]} at batch {best_exact[2]}, "
              f"{best_exact[0] * gflop / peaks['fp32']:.0%} of the torch fp32 matmul peak, "
              f"{best_exact[0] * gflop / max(sgemm, peaks['fp32']):.0%} of the higher of it and "
              f"numpy's (target 70%)")
        for name in ("torch bf16 autocast", *INT8_VARIANTS):
            speedups = ", ".join(
                f"batch {size}: {rates[name, size] / rates['torch eager fp32', size]:.2f}x"
                for size in (1, 8, 32))
            print(f"{name} against torch eager fp32: {speedups} (target 3x)")
        accuracy(engines, card, music, 4 if args.quick else 11,
                 trained=origin.startswith("trained"))

        library = scratch / "library"
        generate_library(library, n_tracks, 30.0, card.sample_rate_hz)
        single = scratch / "single"  # one file: what a run costs besides its files
        single.mkdir()
        (single / "track000.flac").symlink_to(library / "track000.flac")
        print(f"\nend to end: musictag tag over {n_tracks} generated 30 s FLAC files")
        batch = (0.1 * np.random.default_rng(1).standard_normal(
            (16, card.window_samples))).astype(np.float32)
        for path, name in ((fp32, "onnxruntime fp32"), *((p, n) for n, p in int8.items())):
            pure = timed_rate(engines[name][0].predict, batch, seconds)
            wall, rss, n, windows = end_to_end(library, path, "onnx", 16, args.threads)
            one_wall, _, _, one_windows = end_to_end(single, path, "onnx", 16, args.threads)
            startup = max(one_wall - one_windows / pure, 0.0)
            print(f"  {name:<18} {n / wall:.2f} tracks/s, {windows / wall:.2f} windows/s "
                  f"(process start and model load included), peak RSS {rss:.0f} MB; pure "
                  f"inference at batch 16: {pure:.2f} windows/s; end to end = "
                  f"{windows / wall / pure:.0%} of it; start-up {startup:.2f} s (from a one-file "
                  f"run), {windows / max(wall - startup, 1e-9) / pure:.0%} without it",
                  flush=True)


def bf16_profile(card: ModelCard, weights: Path, peaks: dict[str, float], gflop: float,
                 threads: int, seconds: float) -> None:
    """The bf16 path's and onnxruntime fp32's rates at batch 8, and the bf16 per-layer profile."""
    from torch.profiler import ProfilerActivity, profile

    batch = (0.1 * np.random.default_rng(0).standard_normal((8, card.window_samples))
             ).astype(np.float32)
    bf16 = TorchBackend(card, weights, device="cpu", precision="bf16")
    onnx_file = (card.home or REPO / "models") / card.weights.get("onnx", "")
    engines = {"torch bf16 channels-last": (bf16.predict, "bf16")}
    if onnx_file.is_file():
        engines["onnxruntime fp32"] = (OnnxBackend(onnx_file, threads=threads).predict, "fp32")
    for name, (run, peak) in engines.items():
        rate = timed_rate(run, batch, seconds)
        print(f"{name:<26} batch 8: {rate:.2f} windows/s, {rate * gflop:.1f} GFLOP/s = "
              f"{rate * gflop / peaks[peak]:.0%} of the {peak} matmul peak")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        bf16.predict(batch)
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=28,
        max_shapes_column_width=60))


def _fallback_audio(folder: Path, card: ModelCard) -> list[Path]:
    """Generated tracks to calibrate int8 on when the corpus is absent."""
    generate_library(folder / "calibration", 4, 10.0, card.sample_rate_hz)
    return sorted((folder / "calibration").iterdir())


if __name__ == "__main__":
    main()
