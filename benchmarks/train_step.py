"""One training step of the 3^9 SampleCNN (batch 16) in each compute form, in one run.

Prints the median seconds of a forward + backward + AdamW step for conv1d fp32 (the baseline),
conv1d under bf16 autocast, and the channels-last conv2d form under bf16 autocast (what
``musictag train`` and ``musictag distill`` use for bf16), as ratios to the baseline, beside
the CPU's bf16 instruction sets. Then the distillation step as it runs: the student step plus
the teachers' labelling of ``--labels-per-step`` new segments, against labelling the whole
batch (no label bank). Not part of the suite.

    python benchmarks/train_step.py                      # the student forms only
    python benchmarks/train_step.py --teacher musicnn-mtt-musicnn --teacher musicnn-mtt-vgg \\
        --teacher won2020-mtat-musicnn                   # plus the teachers' labelling
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from musictag.nets import build_model
from musictag.nets.samplecnn import SampleCNNConfig


def cpu_bf16_features() -> str:
    flags = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    found = [flag for flag in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_vnni")
             if flag in flags]
    return ", ".join(found) or "none"


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def student_step(*, channels_last_2d: bool, bf16: bool, batch: int) -> Callable[[], float]:
    torch.manual_seed(0)
    model = build_model(SampleCNNConfig()).train()
    model.use_channels_last_2d(channels_last_2d)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs = torch.randn(batch, SampleCNNConfig().input_samples)
    targets = torch.rand(batch, 50)

    def step() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(inputs)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--teacher", action="append", default=[])
    parser.add_argument("--labels-per-step", type=int, default=4)
    args = parser.parse_args()
    print(f"CPU bf16 features: {cpu_bf16_features()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; batch {args.batch_size}")
    forms = [("conv1d fp32 (baseline)", False, False), ("conv1d bf16 autocast", False, True),
             ("channels-last conv2d bf16 (train/distill)", True, True)]
    seconds = {}
    for name, channels_last_2d, bf16 in forms:
        seconds[name] = median_seconds(student_step(channels_last_2d=channels_last_2d,
                                                    bf16=bf16, batch=args.batch_size),
                                       args.repeats)
    baseline = seconds[forms[0][0]]
    for name, value in seconds.items():
        print(f"  {name:44s} {value:6.3f} s/step  {baseline / value:5.2f}x")
    if not args.teacher:
        return
    from musictag.distill.teachers import TeacherEnsemble

    ensemble = TeacherEnsemble([(name, 1.0) for name in args.teacher],
                               student_window_s=59049 / 22050)
    span = int(np.ceil(ensemble.span_s * 22050))
    segments = np.random.default_rng(0).uniform(-0.3, 0.3, (args.batch_size, span))
    segments = segments.astype(np.float32)
    whole = median_seconds(lambda: ensemble.score(segments, sample_rate_hz=22050), 3)
    fresh = median_seconds(lambda: ensemble.score(segments[:args.labels_per_step],
                                                  sample_rate_hz=22050), 3)
    student = seconds[forms[2][0]]
    print(f"  teachers labelling {args.batch_size} segments: {whole:.3f} s; "
          f"{args.labels_per_step}: {fresh:.3f} s")
    print(f"  distill step, every segment labelled: {student + whole:.3f} s; with the bank "
          f"({args.labels_per_step} new a step): {student + fresh:.3f} s "
          f"({(student + whole) / (student + fresh):.2f}x)")


if __name__ == "__main__":
    main()
