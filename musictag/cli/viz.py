"""``musictag filters`` and ``musictag taggram``: pictures of what a model hears.

The taggram is a command of its own rather than ``tag --taggram``: ``tag`` streams records for many
files into one output, while a taggram is one picture (or one score matrix) of one file, with
options (``--top``, png or json) that mean nothing to ``tag``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from ..audio import AudioError
from ..errors import MusictagError
from ..fileio import atomic_open
from .app import (
    BatchSizeOption,
    DeviceOption,
    ModelOption,
    QuietOption,
    VerboseOption,
    WeightsOption,
    app,
    fail,
    fail_error,
    progress_bar,
    setup_logging,
    stderr,
)
from .loading import open_tagger


def _plotting():
    """The plotting module, or a one-line error when the ``viz`` extra is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        fail("figures need matplotlib: pip install 'musictag[viz]'")
    from ..viz import plotting

    return plotting


def companion_paths(output: Path) -> tuple[Path, Path]:
    """Where ``filters`` puts the waveform figure and the arrays, beside the spectra figure."""
    return output.with_name(f"{output.stem}-waveforms.png"), output.with_suffix(".npz")


@app.command()
def filters(
    model: ModelOption = None,
    weights: WeightsOption = None,
    layers: Annotated[str | None, typer.Option(
        "--layers", "-l", help="Layers to draw, e.g. 1-6, 1,3,7 or all (default: every layer "
                               "that sees a whole kernel inside the estimate).")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Gradient-ascent steps.")] = 20,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the starting noise.")] = 0,
    input_samples: Annotated[int, typer.Option(
        "--input-samples", min=2, help="Length of each estimate in samples (paper: 729).")] = 729,
    step_size: Annotated[float, typer.Option(
        "--step-size", min=1e-6, help="Size of each RMS-normalised gradient step.")] = 0.1,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Spectra figure (.png); NAME-waveforms.png and NAME.npz are "
                               "written beside it.")] = Path("filters.png"),
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Estimate each filter's preferred waveform by gradient ascent and draw its spectrum."""
    from ..viz.filters import (
        conv_layers,
        default_layers,
        estimate_filters,
        npz_arrays,
        parse_layers,
    )

    setup_logging(verbose)
    if output.suffix.lower() != ".png":
        fail(f"{output}: the figure is written as PNG; give a .png name")
    plotting = _plotting()
    # gradient ascent needs the torch network, even where tagging would pick onnxruntime
    tagger = open_tagger(model, weights, device=device, backend="torch")
    card, network = tagger.card, tagger.backend.model
    available = conv_layers(network)
    if not available:
        fail(f"model {card.name!r} has no convolution to visualise")
    try:
        chosen = parse_layers(layers, available) if layers else \
            default_layers(network, available, input_samples=input_samples)
    except MusictagError as error:
        fail_error(error)

    progress = progress_bar(quiet)
    tasks: dict[int, int] = {}
    started = time.perf_counter()

    def on_step(number: int, done: int, total: int) -> None:
        if number not in tasks:
            tasks[number] = progress.add_task(f"layer {number}", total=total)
        progress.update(tasks[number], completed=done)

    results = []
    with progress:
        for layer in chosen:
            began = time.perf_counter()
            results += estimate_filters(network, [layer], sample_rate_hz=card.sample_rate_hz,
                                        max_samples=card.window_samples,
                                        input_samples=input_samples, steps=steps,
                                        step_size=step_size, seed=seed, on_step=on_step)
            if not quiet:
                progress.console.print(
                    f"layer {layer.number} ({layer.conv}): {layer.n_filters} filters, "
                    f"{results[-1].context_samples} samples, {time.perf_counter() - began:.1f} s",
                    markup=False, highlight=False)

    rate = card.sample_rate_hz
    title = (f"{card.name}: filters estimated by gradient ascent "
             f"({input_samples} samples from noise, {steps} steps, seed {seed})")
    waveforms_path, npz_path = companion_paths(output)
    plotting.save_png(plotting.filter_spectra_figure(results, sample_rate_hz=rate, title=title),
                      output)
    plotting.save_png(plotting.filter_waveforms_figure(results, sample_rate_hz=rate,
                                                       title=title), waveforms_path)
    with atomic_open(npz_path, "wb") as handle:
        np.savez_compressed(handle, **npz_arrays(results, sample_rate_hz=rate, steps=steps,
                                                 step_size=step_size, seed=seed))
    if not quiet:
        stderr.print(f"{len(results)} layers in {time.perf_counter() - started:.1f} s",
                     markup=False, highlight=False)
    for path in (output, waveforms_path, npz_path):
        print(path)


@app.command()
def taggram(
    path: Annotated[Path, typer.Argument(help="An audio file.")],
    model: ModelOption = None,
    weights: WeightsOption = None,
    top: Annotated[int, typer.Option("--top", "-n", min=1,
                                     help="Draw the N tags with the highest track score.")] = 10,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="png (the picture) or json (per-window scores).")] = "png",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write (default: NAME.taggram.png here for png, "
                               "stdout for json).")] = None,
    device: DeviceOption = "auto",
    batch_size: BatchSizeOption = 16,
    verbose: VerboseOption = False,
) -> None:
    """Draw how a track's top tags change from window to window over time."""
    from ..viz.taggram import taggram as make_taggram

    setup_logging(verbose)
    if fmt not in ("png", "json"):
        fail(f"unknown format {fmt!r}; choose png or json")
    plotting = _plotting() if fmt == "png" else None
    tagger = open_tagger(model, weights, device=device, batch_size=batch_size)
    try:
        gram = make_taggram(tagger, path, top=top)
    except AudioError as error:
        fail_error(error)
    if plotting is not None:
        target = output or Path(f"{path.stem}.taggram.png")
        print(plotting.save_png(plotting.taggram_figure(gram), target))
    elif output is not None:
        with atomic_open(output, "w", encoding="utf-8") as handle:
            json.dump(gram.record(), handle, ensure_ascii=False, indent=1)
            handle.write("\n")
    else:
        json.dump(gram.record(), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
