"""Figures for filters and taggrams, drawn with matplotlib's Agg canvas and written atomically.

matplotlib is an optional extra (``musictag[viz]``), imported only here and only when a figure is
drawn. Figures are built on ``matplotlib.figure.Figure`` with an Agg canvas rather than through
pyplot, so drawing never switches the backend of a user's interactive session and holds no global
state. Sizes are fixed in inches at :data:`DPI`, so a figure's pixel size depends only on how many
panels it has (the tests rely on that).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MusictagError
from ..fileio import atomic_path
from .filters import LayerEstimate
from .taggram import Taggram

DPI = 100
#: Lowest magnitude drawn, relative to each filter's peak.
FLOOR_DB = -40.0
SPECTRA_COLUMNS = 3
SPECTRUM_PANEL_IN = (4.6, 3.4)
#: Example waveforms per layer: filters at evenly spaced ranks of the peak-frequency order.
WAVEFORM_EXAMPLES = 4
WAVEFORM_PANEL_IN = (3.2, 1.7)
TITLE_IN = 0.7
#: File names in a taggram's title are cut to their last this many characters.
TITLE_CHARS = 60


class MatplotlibMissingError(MusictagError, ImportError):
    def __init__(self) -> None:
        super().__init__("figures need matplotlib: pip install 'musictag[viz]'")


def _figure(width_in: float, height_in: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MatplotlibMissingError() from None
    figure = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Any, path: str | os.PathLike) -> Path:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI)
    return Path(path)


def _grid(n_panels: int, columns: int) -> tuple[int, int]:
    columns = min(columns, n_panels)
    return math.ceil(n_panels / columns), columns


def _layer_title(result: LayerEstimate) -> str:
    title = f"layer {result.layer.number} ({result.layer.conv}, {result.layer.n_filters} filters)"
    if result.context_samples > result.estimates.shape[1]:
        title += f"\nin {result.context_samples} samples of silence"
    return title


def filter_spectra_figure(results: Sequence[LayerEstimate], *, sample_rate_hz: float,
                          title: str) -> Any:
    """The paper's Figure 2: per layer, filter spectra sorted by peak frequency, in dB."""
    rows, columns = _grid(len(results), SPECTRA_COLUMNS)
    figure = _figure(columns * SPECTRUM_PANEL_IN[0], rows * SPECTRUM_PANEL_IN[1] + TITLE_IN)
    axes = figure.subplots(rows, columns, squeeze=False)
    image = None
    for ax, result in zip(axes.flat, results, strict=False):
        magnitude = result.spectra[result.order]
        peak = np.maximum(magnitude.max(axis=1, keepdims=True), 1e-30)
        decibels = np.maximum(20 * np.log10(np.maximum(magnitude / peak, 1e-30)), FLOOR_DB)
        n_filters = len(magnitude)
        image = ax.imshow(decibels.T, origin="lower", aspect="auto", cmap="magma",
                          vmin=FLOOR_DB, vmax=0.0, interpolation="nearest",
                          extent=(0.5, n_filters + 0.5, 0.0, sample_rate_hz / 2))
        ax.set_title(_layer_title(result), fontsize=10)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("filter (sorted by peak frequency)")
        ax.set_ylabel("frequency (Hz)")
    for ax in axes.flat[len(results):]:
        ax.set_visible(False)
    figure.colorbar(image, ax=axes, shrink=0.8, label="magnitude (dB re. each filter's peak)")
    figure.suptitle(title, fontsize=12)
    return figure


def filter_waveforms_figure(results: Sequence[LayerEstimate], *, sample_rate_hz: float,
                            title: str) -> Any:
    """The paper's Figure 3: example estimated waveforms per layer, low to high peak frequency."""
    n_samples = results[0].estimates.shape[1]
    figure = _figure(WAVEFORM_EXAMPLES * WAVEFORM_PANEL_IN[0],
                     len(results) * WAVEFORM_PANEL_IN[1] + TITLE_IN)
    axes = figure.subplots(len(results), WAVEFORM_EXAMPLES, squeeze=False, sharex=True)
    time_ms = np.arange(n_samples) / sample_rate_hz * 1000
    for row, result in zip(axes, results, strict=True):
        ranks = np.linspace(0, len(result.order) - 1, WAVEFORM_EXAMPLES).round().astype(int)
        for ax, rank in zip(row, ranks, strict=True):
            index = int(result.order[rank])
            estimate = result.estimates[index]
            ax.plot(time_ms, estimate / max(float(np.abs(estimate).max()), 1e-30),
                    linewidth=0.6, color="tab:blue")
            ax.set_ylim(-1.05, 1.05)
            ax.set_title(f"layer {result.layer.number}, filter {index}: "
                         f"peak {result.peak_hz[index]:.0f} Hz", fontsize=9)
        row[0].set_ylabel("amplitude\n(re. peak)")
    for ax in axes[-1]:
        ax.set_xlabel("time (ms)")
    figure.suptitle(title, fontsize=12)
    return figure


def taggram_figure(gram: Taggram) -> Any:
    """Tags (highest track score on top) against time in seconds, coloured by window score."""
    n_tags = len(gram.labels)
    figure = _figure(11.0, 1.4 + 0.32 * n_tags)
    ax = figure.subplots()
    centres = gram.spans_s.mean(axis=1)
    edges = np.concatenate([[gram.spans_s[0, 0]], (centres[1:] + centres[:-1]) / 2,
                            [gram.spans_s[-1, 1]]])
    mesh = ax.pcolormesh(edges, np.arange(n_tags + 1), gram.scores.T, cmap="viridis",
                         vmin=0.0, vmax=1.0, shading="flat")
    ax.set_yticks(np.arange(n_tags) + 0.5, gram.labels)
    ax.invert_yaxis()
    ax.set_xlim(0.0, max(gram.duration_s, float(edges[-1])))  # an unscored tail stays blank
    ax.set_xlabel("time (s)")
    ax.set_ylabel("tag (by track score)")
    name = Path(gram.path).name
    name = name if len(name) <= TITLE_CHARS else "…" + name[-TITLE_CHARS + 1:]
    ax.set_title(f"Taggram of {name} ({gram.model}; "
                 f"{gram.n_windows} windows of {gram.window_s:.2f} s)", fontsize=11)
    figure.colorbar(mesh, ax=ax, label="window score (sigmoid)", pad=0.01)
    return figure
