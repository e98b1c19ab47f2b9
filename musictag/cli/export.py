"""``musictag export --onnx``: a verified ONNX file for the torch-free tagging path."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..audio import find_audio_files
from ..hub import local_weights
from ..inference import resolve_card
from ..registry import ModelCard
from .app import USER_ERRORS, ModelOption, QuietOption, WeightsOption, app, fail, fail_error, stderr


def _card_and_weights(model: str | None, weights: Path | None) -> tuple[ModelCard, Path]:
    try:
        card = resolve_card(model, weights)
        return card, weights if weights is not None else local_weights(card)
    except USER_ERRORS as error:
        fail_error(error)


@app.command()
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="The .onnx file to write.")],
    onnx: Annotated[bool, typer.Option(
        "--onnx", help="Export to ONNX (the only format so far; required).")] = False,
    model: ModelOption = None,
    weights: WeightsOption = None,
    quantize: Annotated[str | None, typer.Option(
        "--quantize", help="int8: static quantization calibrated on --audio (about 4x faster "
                           "on CPUs with VNNI); the score difference is measured and printed.")
    ] = None,
    fp32_layers: Annotated[int, typer.Option(
        "--fp32-layers", min=1, help="With --quantize int8: stages (up to each ReLU) from the "
                                     "input kept fp32. 1 keeps the front end; 2 also the first "
                                     "block: closer to fp32, about 3x slower than 1.")] = 1,
    audio: Annotated[list[Path] | None, typer.Option(
        "--audio", "-a", help="Audio files or folders whose windows verify the export (and "
                              "calibrate int8); repeat for more. Real music is best.")] = None,
    quiet: QuietOption = False,
) -> None:
    """Export a model to ONNX, verified against torch on real windows before it is written.

    The file carries the model card in its metadata, so `musictag tag --weights FILE.onnx`
    needs nothing else and no torch.
    """
    if not onnx:
        fail("say which format: --onnx")
    if quantize not in (None, "int8"):
        fail(f"unknown --quantize {quantize!r}; choose int8")
    if output.suffix.lower() != ".onnx":
        fail(f"{output}: the output file name must end in .onnx")
    card, weights_path = _card_and_weights(model, weights)
    files = list(find_audio_files(audio or []))
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter writes the graph through it)

        from ..export import export_onnx
    except ImportError as error:
        fail(f"export needs torch and onnx ({error.name} is missing): "
             f"pip install 'musictag[export]'")
    step = None if quiet else (lambda line: stderr.print(line, markup=False, highlight=False))
    try:
        report = export_onnx(card, weights_path, output, precision=quantize or "fp32",
                             audio=files, fp32_layers=fp32_layers, on_step=step)
    except USER_ERRORS as error:
        fail_error(error)
    for note in report.notes:
        stderr.print(f"musictag: note: {note}", markup=False, highlight=False)
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.1f} MB, {report.precision}, "
          f"opset {report.opset})")
    print(f"onnxruntime fp32 vs torch: {report.fp32.describe()} "
          f"({report.n_audio_windows} audio + {report.n_synthetic_windows} synthetic windows)")
    if report.quantized is not None:
        print(f"int8 vs torch fp32 on held-out windows: {report.quantized.describe()}")


@app.command("verify-paths")
def verify_paths(
    audio: Annotated[list[Path], typer.Option(
        "--audio", "-a", help="Real music (files or folders) to measure on; repeat for more. "
                              "Not the tracks an int8 file was calibrated on.")],
    model: ModelOption = None,
    precision: Annotated[list[str] | None, typer.Option(
        "--precision", help="int8 and/or bf16 (default: both).")] = None,
    tracks: Annotated[int, typer.Option("--tracks", min=1,
                                        help="At most this many tracks, spread over the files.")
                      ] = 40,
    quiet: QuietOption = False,
) -> None:
    """Measure faster paths against fp32 on real tracks and record the result beside the card.

    `musictag tag` (--precision auto) runs a faster path only where this record shows it within
    bounds (same top-5 on >= 95% of tracks, every track score within 0.02) for the same weights.
    """
    import shlex

    from ..fastpath import write_check
    from ..verify_paths import measure, spread

    chosen = spread(list(find_audio_files(audio)), tracks)
    if not chosen:
        fail("no audio files found in --audio")
    words = ["musictag", "verify-paths", *(["--model", model] if model else []),
             *[word for path in audio for word in ("--audio", str(path))],
             *[word for name in precision or [] for word in ("--precision", name)],
             "--tracks", str(tracks)]
    command = shlex.join(words)
    step = None if quiet else (lambda path: stderr.print(f"  {path}", markup=False,
                                                         highlight=False))
    for name in precision or ["int8", "bf16"]:
        try:
            check = measure(model, name, chosen, command=command, on_track=step)
            card = resolve_card(model, None)
        except USER_ERRORS as error:
            fail_error(error)
        path = write_check(card, check)
        verdict = "within bounds" if check.within_bounds() else "OUTSIDE the bounds: not used"
        print(f"{check.describe()}, mean {check.mean_track_diff:.4f}: {verdict} "
              f"(recorded in {path})")
