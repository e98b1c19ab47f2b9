"""ONNX export of any model musictag can build, verified against torch before it is written.

The exported graph takes ``waveform`` ``(batch, window_samples)`` with a dynamic batch axis and
returns ``scores`` (sigmoids, what tagging averages) and ``embedding`` (the classifier's input,
what similarity search uses), so the onnxruntime backend needs nothing else. The card goes into
``metadata_props`` (:mod:`musictag.backends.onnx_backend`), with a digest of everything else in
the file (:func:`stamped_bytes`) that loading checks.

Verification runs the exported file in onnxruntime on the same windows as the torch model:
windows decoded from the audio files given (real music; the report says how many) plus noise
and silence, which a model also meets. The fp32 export must agree within
:data:`FP32_TOLERANCE`, or nothing is written.

``int8`` quantizes statically (QDQ, per-channel signed weights, unsigned activations) with
activation ranges calibrated on two thirds of the real audio windows and the difference
measured on the remaining third. Calibration never sees the synthetic noise, whose broadband
peaks would stretch every range, and takes each range at the 99.99th percentile rather than
min-max, which outliers stretch just as much. The front end, every node before the first ReLU,
stays fp32: it reads the raw waveform or a power spectrogram, whose dynamic range int8 cannot
hold, and costs little. ``fp32_layers`` keeps more ReLU-ended stages in fp32: the first block
after a raw-waveform front end carries the loudness of the input and is where most of the int8
error arises, at the price of most of int8's speed. onnxruntime's CPU provider has no fast fp16
or bf16 convolutions, so those are not offered. The figures behind these choices, measured on
the default model's stages, are in docs/default-model.md ("Measured: int8 export").
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from . import __version__
from .audio import AudioError
from .backends.onnx_backend import (
    CARD_KEY,
    DIGEST_KEY,
    EMBEDDING_OUTPUT,
    FACT_KEYS,
    INPUT_NAME,
    PRECISION_KEY,
    SCORES_OUTPUT,
    OnnxBackend,
    model_digest,
)
from .backends.torch_backend import load_model
from .errors import ExportError, ModelError, first_line
from .fileio import atomic_path
from .inference import card_windows
from .registry import ModelCard

#: The ONNX operator set written: supported by onnxruntime since 1.18 (2024).
OPSET = 21
#: Largest |onnxruntime - torch| allowed for fp32 scores (and embeddings, relative to their range).
FP32_TOLERANCE = 1e-4
PRECISIONS = ("fp32", "int8")
#: Verification windows taken from the audio files, spread over them.
MAX_AUDIO_WINDOWS = 64
#: Real windows an int8 export decodes: two thirds calibrate, one third measures. The
#: percentile calibrator keeps every activation of every window in memory (~35 MB per window
#: for the 3^9 model), so this bounds the export's memory too.
INT8_AUDIO_WINDOWS = 192
CALIBRATION_PERCENTILE = 99.99
_BATCH = 8

#: Called with a line saying which step the export is at.
StepCallback = Callable[[str], None]


@dataclass
class Difference:
    """How far one run's scores are from torch fp32's on the same windows."""

    max_abs: float
    mean_abs: float
    top5_agreement: float  # fraction of windows with the same top-5 set of tags
    n_windows: int

    def describe(self) -> str:
        return (f"max |diff| {self.max_abs:.2e}, mean {self.mean_abs:.2e}, same top-5 on "
                f"{100 * self.top5_agreement:.0f}% of {self.n_windows} windows")


@dataclass
class ExportReport:
    path: Path
    precision: str
    opset: int
    size_bytes: int
    n_audio_windows: int  # decoded from the given files
    n_synthetic_windows: int  # noise and silence
    fp32: Difference
    embedding_max_abs: float
    quantized: Difference | None = None
    notes: list[str] = field(default_factory=list)


def _top5_agreement(a: np.ndarray, b: np.ndarray) -> float:
    k = min(5, a.shape[1])
    top_a = np.sort(np.argsort(-a, axis=1)[:, :k], axis=1)
    top_b = np.sort(np.argsort(-b, axis=1)[:, :k], axis=1)
    return float((top_a == top_b).all(axis=1).mean())


def difference(reference: np.ndarray, other: np.ndarray) -> Difference:
    gap = np.abs(reference.astype(np.float64) - other)
    return Difference(float(gap.max()), float(gap.mean()), _top5_agreement(reference, other),
                      len(reference))


def audio_windows(card: ModelCard, paths: Iterable[str | os.PathLike], *,
                  limit: int = MAX_AUDIO_WINDOWS) -> np.ndarray:
    """Up to ``limit`` windows, as many from each file, of the card's windowing of each file."""
    per_file = []
    for path in paths:
        try:
            per_file.append(np.stack(list(card_windows(card, path))))
        except AudioError as error:
            logging.getLogger(__name__).warning("verification audio skipped: %s", error)
    if not per_file:
        return np.zeros((0, card.window_samples), np.float32)
    share = max(1, limit // len(per_file))
    chosen = [w[np.linspace(0, len(w) - 1, min(share, len(w))).round().astype(int)]
              for w in per_file]
    return np.concatenate(chosen)[:limit].astype(np.float32)


def synthetic_windows(card: ModelCard, n: int = 4, seed: int = 0) -> np.ndarray:
    """Noise at two levels, a near-silent window and digital silence."""
    rng = np.random.default_rng(seed)
    size = card.window_samples
    windows = [0.3 * rng.standard_normal(size), 0.01 * rng.standard_normal(size),
               1e-4 * rng.standard_normal(size), np.zeros(size)]
    return np.stack(windows[:n]).astype(np.float32)


class _ScoresAndEmbedding(nn.Module):
    """The card's network with both outputs: the classifier's input is captured by a hook.

    Every architecture ends ``classifier(dropout(embed(x)))``; in eval mode the classifier's
    input is the embedding, which verification checks against ``model.embed`` anyway.
    """

    def __init__(self, model: nn.Module, n_classes: int):
        super().__init__()
        self.model = model
        heads = [m for m in model.modules()
                 if isinstance(m, nn.Linear) and m.out_features == n_classes]
        if not heads:
            raise ExportError("no linear layer with one output per label to export")
        self.classifier = heads[-1]
        self._seen: list[torch.Tensor] = []
        self.classifier.register_forward_pre_hook(lambda _, inputs: self._seen.append(inputs[0]))

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._seen.clear()
        logits = self.model(waveform)
        return torch.sigmoid(logits), self._seen[-1]


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx logs its progress and deprecations; the library reports through callbacks."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript",
                                                    "torch._dynamo", "torch.fx")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def to_onnx(model: nn.Module, card: ModelCard) -> onnx.ModelProto:
    """The fp32 graph with a dynamic batch axis, its card in the metadata, checker-clean."""
    wrapped = _ScoresAndEmbedding(model, len(card.labels)).eval()
    example = torch.zeros(2, card.window_samples)
    with _quiet_exporter(), torch.no_grad():
        try:
            program = torch.onnx.export(
                wrapped, (example,), dynamo=True, opset_version=OPSET, verbose=False,
                input_names=[INPUT_NAME], output_names=[SCORES_OUTPUT, EMBEDDING_OUTPUT],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},))
        except Exception as error:  # the exporter raises many types; report the first line
            raise ExportError(f"torch.onnx could not export {card.arch['name']!r}: "
                              f"{first_line(error)}") from None
    proto = program.model_proto
    set_metadata(proto, card, "fp32")
    onnx.checker.check_model(proto, full_check=True)
    return proto


def set_metadata(proto: onnx.ModelProto, card: ModelCard, precision: str,
                 extra: dict[str, str] | None = None) -> None:
    facts = card.to_dict()
    entries = {CARD_KEY: json.dumps(facts), PRECISION_KEY: precision,
               **{f"musictag_{key}": json.dumps(facts[key]) for key in FACT_KEYS},
               **(extra or {})}
    del proto.metadata_props[:]
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.producer_version = "musictag", __version__
    proto.doc_string = card.description


def stamped_bytes(proto: onnx.ModelProto) -> bytes:
    """``proto`` with :func:`model_digest` of itself added to its metadata, serialized.

    Called last, once the rest of the metadata is final; an older digest entry is replaced.
    The digest is checked on the bytes returned, since it is defined on a serialization.
    """
    kept = [(entry.key, entry.value) for entry in proto.metadata_props if entry.key != DIGEST_KEY]
    del proto.metadata_props[:]
    for key, value in kept:
        proto.metadata_props.add(key=key, value=value)
    digest = model_digest(proto.SerializeToString())
    proto.metadata_props.add(key=DIGEST_KEY, value=digest)
    serialized = proto.SerializeToString()
    if model_digest(serialized) != digest:
        raise ExportError("the ONNX serialization changed when its digest was added; "
                          "nothing written")
    return serialized


def _run_batches(run: Callable[[np.ndarray], np.ndarray], windows: np.ndarray) -> np.ndarray:
    return np.concatenate([run(windows[i:i + _BATCH]) for i in range(0, len(windows), _BATCH)])


def _front_end_nodes(proto: onnx.ModelProto, stages: int = 1) -> list[str]:
    """Names of the nodes before the ``stages``-th ReLU (graph nodes are in topological order).

    All of them, not only the weighted ones: a spectrogram front end's Mul, Add and Pow would
    otherwise be quantized on the power spectrum, whose range int8 cannot hold. Nodes are
    excluded by name, so unnamed ones are named first.
    """
    names, relus = [], 0
    for index, node in enumerate(proto.graph.node):
        if node.op_type == "Relu":
            relus += 1
            if relus == stages:
                break
        if not node.name:
            node.name = f"musictag_front_end_{index}"
        names.append(node.name)
    return names


def quantize_int8(source: Path, target: Path, calibration: np.ndarray, *,
                  fp32_layers: int = 1) -> None:
    """Static QDQ int8 of ``source`` (fp32 ONNX) into ``target``, ranges from ``calibration``;
    the nodes before the ``fp32_layers``-th ReLU stay fp32."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # equal batches: the percentile calibrator stacks every batch's activations into one array
    calibration = calibration[:max(_BATCH, len(calibration) // _BATCH * _BATCH)]

    class Windows(CalibrationDataReader):
        def __init__(self):
            self._batches = iter([{INPUT_NAME: calibration[i:i + _BATCH]}
                                  for i in range(0, len(calibration), _BATCH)])

        def get_next(self):
            return next(self._batches, None)

    prepared = target.with_name(target.name + ".pre.onnx")
    try:
        with _quiet_exporter():
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            graph = onnx.load(str(prepared))
            front_end = _front_end_nodes(graph, fp32_layers)
            onnx.save(graph, str(prepared))  # with the names given to unnamed nodes
            quantize_static(str(prepared), str(target), Windows(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True, nodes_to_exclude=front_end,
                            calibrate_method=CalibrationMethod.Percentile,
                            extra_options={"CalibPercentile": CALIBRATION_PERCENTILE})
    finally:
        prepared.unlink(missing_ok=True)


def export_onnx(card: ModelCard, weights_path: str | os.PathLike, target: str | os.PathLike, *,
                precision: str = "fp32", audio: Iterable[str | os.PathLike] = (),
                fp32_layers: int = 1, on_step: StepCallback | None = None) -> ExportReport:
    """Export, verify and atomically write ``target``; raises :class:`ExportError` on failure.

    ``fp32_layers`` (int8 only): how many ReLU-ended stages from the input stay fp32."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if fp32_layers < 1:
        raise ModelError("fp32_layers must be at least 1: the front end always stays fp32")
    step = on_step or (lambda _: None)
    model = load_model(card, weights_path)
    real = audio_windows(card, audio, limit=INT8_AUDIO_WINDOWS if precision == "int8"
                         else MAX_AUDIO_WINDOWS)
    windows = np.concatenate([real, synthetic_windows(card)])
    with torch.no_grad():
        reference = _run_batches(lambda w: torch.sigmoid(model(torch.from_numpy(w))).numpy(),
                                 windows)
        reference_embedding = _run_batches(lambda w: model.embed(torch.from_numpy(w)).numpy(),
                                           windows)
    step(f"exporting {card.name} ({card.arch['name']}) to ONNX opset {OPSET}")
    proto = to_onnx(model, card)
    target = Path(target)
    with tempfile.TemporaryDirectory(prefix="musictag-export-") as scratch:
        fp32_path = Path(scratch) / "fp32.onnx"
        fp32_path.write_bytes(stamped_bytes(proto))
        step(f"verifying onnxruntime against torch on {len(real)} audio + "
             f"{len(windows) - len(real)} synthetic windows")
        fp32 = OnnxBackend(fp32_path)
        exact = difference(reference, _run_batches(fp32.predict, windows))
        embedding = np.abs(_run_batches(fp32.embed, windows) - reference_embedding).max()
        embedding_range = max(1.0, float(np.abs(reference_embedding).max()))
        if exact.max_abs > FP32_TOLERANCE or embedding / embedding_range > FP32_TOLERANCE:
            raise ExportError(f"onnxruntime disagrees with torch: scores {exact.describe()}; "
                              f"embedding max |diff| {embedding:.2e}; nothing written")
        report = ExportReport(path=target, precision=precision, opset=OPSET, size_bytes=0,
                              n_audio_windows=len(real),
                              n_synthetic_windows=len(windows) - len(real), fp32=exact,
                              embedding_max_abs=float(embedding))
        if not len(real):
            report.notes.append("verified on noise and silence only; pass audio files for "
                                "real windows")
        result_path = fp32_path
        verified = {"musictag_verified_max_abs_diff": f"{exact.max_abs:.3e}",
                    "musictag_verified_windows": str(len(windows))}
        if precision == "int8":
            if not len(real):
                raise ExportError("int8 needs audio files to calibrate its activation ranges on; "
                                  "nothing written")
            calibrating = np.arange(len(real)) % 3 != 2
            measured = np.concatenate([~calibrating, np.ones(len(windows) - len(real), bool)])
            step(f"quantizing to int8 (ranges from {calibrating.sum()} audio windows, "
                 f"{fp32_layers} stage(s) kept fp32)")
            int8_path = Path(scratch) / "int8.onnx"
            quantize_int8(fp32_path, int8_path, real[calibrating], fp32_layers=fp32_layers)
            int8 = onnx.load(str(int8_path))
            set_metadata(int8, card, "int8", verified)  # drops a digest copied from fp32
            int8_path.write_bytes(stamped_bytes(int8))
            quantized = OnnxBackend(int8_path)
            report.quantized = difference(reference[measured], _run_batches(
                quantized.predict, windows[measured]))
            set_metadata(int8, card, "int8", {
                **verified, "musictag_int8_max_abs_diff": f"{report.quantized.max_abs:.3e}",
                "musictag_int8_top5_agreement": f"{report.quantized.top5_agreement:.4f}",
                "musictag_int8_fp32_layers": str(fp32_layers)})
            onnx.checker.check_model(int8, full_check=True)
            int8_path.write_bytes(stamped_bytes(int8))
            result_path = int8_path
        else:
            set_metadata(proto, card, "fp32", verified)
            fp32_path.write_bytes(stamped_bytes(proto))
        with atomic_path(target) as partial:
            partial.write_bytes(result_path.read_bytes())
    report.size_bytes = target.stat().st_size
    return report
