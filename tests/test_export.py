"""`musictag export --onnx` and the torch-free onnxruntime path, on the tiny model and a tiny
spectrogram model: the file is checker-clean, batch-size free, self-describing, agrees with torch,
int8 measures its own difference, failures write nothing, and tagging from it never imports
torch."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import TINY_LABELS, TINY_RATE_HZ, tiny_arch, tone, write_audio
from torch import nn
from typer.testing import CliRunner

import musictag.export
from musictag.backends.onnx_backend import DIGEST_KEY, OnnxBackend
from musictag.backends.torch_backend import load_model
from musictag.cli import app
from musictag.export import INT8_AUDIO_WINDOWS, audio_windows, synthetic_windows
from musictag.nets import build_model
from musictag.registry import ModelCard
from musictag.weights import CorruptWeightsError, save_weights

REPO = Path(__file__).resolve().parents[1]


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def music_like(folder: Path, rate: int) -> list[Path]:
    """Three different 2 s signals (tone chords with noise), so windows differ from file to file."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, base in enumerate((110.0, 440.0, 1500.0)):
        signal = sum(tone(2.0, rate, base * k) / k for k in (1, 2, 3))
        signal = signal + (0.02 + 0.1 * i) * rng.standard_normal(len(signal))
        paths.append(write_audio(folder / f"song{i}.flac", signal.astype(np.float32), rate))
    return paths


def write_model(folder: Path, arch: dict, *, name: str,
                window_samples: int) -> tuple[ModelCard, Path]:
    """Seeded He-initialised weights without biases. The default initialisation's biases swamp
    the input (every track gets the same scores to 1e-4), and a model that scores every track
    alike could not show that onnxruntime reads the audio."""
    torch.manual_seed(0)
    model = build_model(arch).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    module.bias.zero_()
    card = {"name": name, "arch": arch, "labels": TINY_LABELS, "sample_rate_hz": TINY_RATE_HZ,
            "window_samples": window_samples, "averaging": {"rule": "consecutive"},
            "weights": {"file": f"{name}.safetensors"}, "description": "export tests",
            "licence": "MIT"}
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{name}.safetensors"
    save_weights(weights, {k: v.numpy() for k, v in model.state_dict().items()}, card)
    return ModelCard.from_dict(card, home=folder), weights


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny SampleCNN exported through the CLI in fp32 and int8, verified on three files."""
    root = tmp_path_factory.mktemp("export")
    card, weights = write_model(root / "model", tiny_arch(), name="tiny-export",
                                window_samples=6561)
    songs = music_like(root / "songs", TINY_RATE_HZ)
    fp32 = invoke("export", "--onnx", "--weights", weights, "-o", root / "tiny.onnx",
                  "--audio", root / "songs")
    int8 = invoke("export", "--onnx", "--weights", weights, "-o", root / "tiny-int8.onnx",
                  "--audio", root / "songs", "--quantize", "int8")
    int8_two = invoke("export", "--onnx", "--weights", weights, "-o", root / "tiny-int8-2.onnx",
                      "--audio", root / "songs", "--quantize", "int8", "--fp32-layers", "2")
    return {"root": root, "card": card, "weights": weights, "songs": songs, "fp32": fp32,
            "int8": int8, "int8_two": int8_two}


def torch_scores(card: ModelCard, weights: Path, windows: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(load_model(card, weights)(torch.from_numpy(windows))).numpy()


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_fp32_export_is_checked_dynamic_and_matches_torch(exported):
    result, path = exported["fp32"], exported["root"] / "tiny.onnx"
    assert result.exit_code == 0, result.output
    assert "onnxruntime fp32 vs torch: max |diff|" in result.output
    assert "6 audio + 4 synthetic windows" in result.output  # 2 windows of each 2 s file
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == musictag.export.OPSET
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")

    card, weights = exported["card"], exported["weights"]
    windows = audio_windows(card, exported["songs"])
    assert len(windows) == 6
    onnx_run = session(path)
    for batch in (windows[:1], windows[:5]):
        scores, embedding = onnx_run.run(["scores", "embedding"], {"waveform": batch})
        assert scores.shape == (len(batch), len(TINY_LABELS))
        assert embedding.shape == (len(batch), tiny_arch()["dense_channels"])
        assert np.abs(scores - torch_scores(card, weights, batch)).max() <= 1e-4
    # the files differ, and so do their scores: the comparison above is not of constants
    scores = onnx_run.run(["scores"], {"waveform": windows})[0]
    assert np.abs(scores[0] - scores[-1]).max() > 1e-3


def test_metadata_carries_the_card(exported):
    metadata = session(exported["root"] / "tiny.onnx").get_modelmeta().custom_metadata_map
    assert json.loads(metadata["musictag_labels"]) == TINY_LABELS
    assert json.loads(metadata["musictag_sample_rate_hz"]) == TINY_RATE_HZ
    assert json.loads(metadata["musictag_window_samples"]) == 6561
    assert json.loads(metadata["musictag_averaging"]) == {"rule": "consecutive"}
    stored = ModelCard.from_dict(json.loads(metadata["musictag_card"]))
    assert stored.arch == exported["card"].arch and stored.name == "tiny-export"
    assert metadata["musictag_precision"] == "fp32"
    assert float(metadata["musictag_verified_max_abs_diff"]) <= 1e-4


@pytest.mark.parametrize("name", ["tiny.onnx", "tiny-int8.onnx"])
def test_an_export_carries_a_digest_that_loading_checks(exported, name, tmp_path, caplog):
    """onnxruntime runs a file with a flipped byte inside a weight as readily as a sound one."""
    path = exported["root"] / name
    assert "digest" not in exported["fp32" if name == "tiny.onnx" else "int8"].stderr
    with caplog.at_level(logging.WARNING):
        OnnxBackend(path)
    assert caplog.text == ""
    proto = onnx.load(str(path))
    keys = [entry.key for entry in proto.metadata_props]
    assert keys.count(DIGEST_KEY) == 1 and keys[-1] == DIGEST_KEY

    data = bytearray(path.read_bytes())
    weight = max(proto.graph.initializer, key=lambda tensor: len(tensor.raw_data)).raw_data
    data[data.find(weight) + len(weight) // 2] ^= 0x01  # one bit of one weight
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(bytes(data))
    session(damaged)  # onnxruntime alone would never notice
    with pytest.raises(CorruptWeightsError, match=f"^{damaged}: corrupted"):
        OnnxBackend(damaged)

    del proto.metadata_props[keys.index(DIGEST_KEY)]
    older = tmp_path / "older.onnx"  # as exported before digests: loads, warning once
    onnx.save(proto, str(older))
    with caplog.at_level(logging.WARNING):
        OnnxBackend(older)
        OnnxBackend(older)
    assert [record.getMessage() for record in caplog.records] == [
        f"{older}: carries no digest of its graph and weights (an older musictag wrote it), "
        f"so a corrupted copy would go unnoticed"]

    song = write_audio(tmp_path / "a.wav", tone(2.0, TINY_RATE_HZ), TINY_RATE_HZ)
    result = invoke("tag", "--weights", damaged, song)  # last: the CLI replaces log handlers
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        f"musictag: error: {damaged}: corrupted: its graph and weights do not match the digest "
        f"stored in it; export it again or replace the file"]


def _quantized_front_end_inputs(proto: onnx.ModelProto, stages: int = 1) -> list[str]:
    """Inputs of the compute nodes before the ``stages``-th ReLU that come out of a
    DequantizeLinear."""
    dequantized = {out for node in proto.graph.node if node.op_type == "DequantizeLinear"
                   for out in node.output}
    found, relus = [], 0
    for node in proto.graph.node:
        relus += node.op_type == "Relu"
        if relus == stages:
            break
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            found.extend(name for name in node.input if name in dequantized)
    return found


def test_int8_writes_a_quantized_model_and_reports_its_difference(exported):
    result, path = exported["int8"], exported["root"] / "tiny-int8.onnx"
    assert result.exit_code == 0, result.output
    reported = re.search(r"int8 vs torch fp32 on held-out windows: max \|diff\| ([0-9.e+-]+)",
                         result.output)
    assert reported, result.output
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert _quantized_front_end_inputs(proto) == []  # the waveform front end stays fp32
    metadata = session(path).get_modelmeta().custom_metadata_map
    assert metadata["musictag_precision"] == "int8"
    assert float(metadata["musictag_int8_max_abs_diff"]) == pytest.approx(
        float(reported.group(1)), rel=1e-2)

    # the printed figure is a measurement: our own, on all windows, is of the same size
    card, weights = exported["card"], exported["weights"]
    windows = np.concatenate([audio_windows(card, exported["songs"], limit=INT8_AUDIO_WINDOWS),
                              synthetic_windows(card)])
    gap = np.abs(session(path).run(["scores"], {"waveform": windows})[0]
                 - torch_scores(card, weights, windows)).max()
    assert 0 < float(reported.group(1)) <= gap * 1.01  # printed to three digits
    assert gap < 0.05
    assert path.stat().st_size < (exported["root"] / "tiny.onnx").stat().st_size


def test_fp32_layers_keeps_the_first_block_out_of_int8_too(exported):
    result, path = exported["int8_two"], exported["root"] / "tiny-int8-2.onnx"
    assert result.exit_code == 0, result.output
    assert "2 stage(s) kept fp32" in result.output
    two = onnx.load(str(path))
    assert _quantized_front_end_inputs(two, stages=2) == []
    assert _quantized_front_end_inputs(onnx.load(str(exported["root"] / "tiny-int8.onnx")),
                                       stages=2) != []  # the default quantizes the first block
    assert {node.op_type for node in two.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    metadata = session(path).get_modelmeta().custom_metadata_map
    assert metadata["musictag_int8_fp32_layers"] == "2"


def test_a_failed_export_leaves_no_file(exported, monkeypatch):
    root, weights = exported["root"], exported["weights"]
    target = root / "failed" / "never.onnx"
    target.parent.mkdir()
    monkeypatch.setattr(musictag.export, "FP32_TOLERANCE", -1.0)  # no difference passes
    result = invoke("export", "--onnx", "--weights", weights, "-o", target)
    assert result.exit_code == 2
    assert "onnxruntime disagrees with torch" in result.output
    assert list(target.parent.iterdir()) == []
    monkeypatch.undo()

    result = invoke("export", "--onnx", "--weights", weights, "-o", target, "--quantize", "int8")
    assert result.exit_code == 2 and "int8 needs audio files" in result.output
    assert list(target.parent.iterdir()) == []
    result = invoke("export", "--weights", weights, "-o", target)
    assert result.exit_code == 2 and "--onnx" in result.output
    assert not target.exists()


def _jsonl(output: str) -> dict[str, dict]:
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {Path(record["path"]).name: record for record in records}


def test_tag_with_the_onnx_backend_matches_torch(exported):
    root = exported["root"]
    by_onnx = invoke("tag", root / "songs", "--backend", "onnx", "--weights", root / "tiny.onnx",
                     "--format", "jsonl", "--all-scores", "--quiet")
    by_torch = invoke("tag", root / "songs", "--backend", "torch", "--weights",
                      exported["weights"], "--format", "jsonl", "--all-scores", "--quiet")
    assert by_onnx.exit_code == 0 and by_torch.exit_code == 0, by_onnx.output + by_torch.output
    onnx_records, torch_records = _jsonl(by_onnx.output), _jsonl(by_torch.output)
    assert sorted(onnx_records) == ["song0.flac", "song1.flac", "song2.flac"]
    for name, record in onnx_records.items():
        expected = torch_records[name]
        assert [t["tag"] for t in record["tags"]] == [t["tag"] for t in expected["tags"]]
        gaps = [abs(record["scores"][tag] - expected["scores"][tag]) for tag in TINY_LABELS]
        assert max(gaps) <= 1e-4
    tops = {tuple(t["tag"] for t in record["tags"]) for record in onnx_records.values()}
    assert len(tops) > 1  # the files are told apart, so "same top tags" means something

    refused = invoke("tag", root / "songs", "--backend", "torch", "--weights", root / "tiny.onnx")
    assert refused.exit_code == 2 and "onnx backend" in refused.output


TORCH_FREE = """
import sys
from musictag.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    assert not loaded, f"torch was imported: {loaded[:5]}"
    print("TORCH-FREE OK")
"""


def test_tagging_with_onnx_never_imports_torch(exported):
    root = exported["root"]
    for weights in ("tiny.onnx", "tiny-int8.onnx"):
        done = subprocess.run(
            [sys.executable, "-c", TORCH_FREE, "tag", str(root / "songs" / "song1.flac"),
             "--weights", str(root / weights), "--format", "jsonl", "--quiet"],
            capture_output=True, text=True, cwd=REPO, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "TORCH-FREE OK" in done.stdout
        record = json.loads(done.stdout.splitlines()[0])
        assert record["model"] == "tiny-export" and len(record["tags"]) == 5


def test_a_spectrogram_architecture_exports_and_quantizes(tmp_path):
    """framelevel_mel (Table 3's mel baseline) at a tiny size: a front end of STFT, mel matmul
    and log, which int8 must leave in fp32."""
    arch = {"name": "framelevel_mel", "n_modules": 3, "window": 81, "hop": 27, "n_fft": 243,
            "n_mels": 16, "sample_rate_hz": TINY_RATE_HZ, "m": 3, "module_channels": [8, 8, 16],
            "dense_channels": 16, "n_classes": len(TINY_LABELS), "dropout": 0.5}
    window_samples = 27 * 3**3
    card, weights = write_model(tmp_path / "model", arch, name="tiny-mel",
                                window_samples=window_samples)
    songs = music_like(tmp_path / "songs", TINY_RATE_HZ)
    fp32 = musictag.export.export_onnx(card, weights, tmp_path / "mel.onnx", audio=songs)
    assert fp32.fp32.max_abs <= 1e-4 and fp32.n_audio_windows > 0
    onnx.checker.check_model(onnx.load(str(tmp_path / "mel.onnx")), full_check=True)
    windows = audio_windows(card, songs)
    scores = session(tmp_path / "mel.onnx").run(["scores"], {"waveform": windows[:3]})[0]
    assert np.abs(scores - torch_scores(card, weights, windows[:3])).max() <= 1e-4

    int8 = musictag.export.export_onnx(card, weights, tmp_path / "mel-int8.onnx", audio=songs,
                                       precision="int8")
    proto = onnx.load(str(tmp_path / "mel-int8.onnx"))
    assert "QuantizeLinear" in {node.op_type for node in proto.graph.node}
    assert _quantized_front_end_inputs(proto) == []
    # measured, not promised: random He-initialised weights give large logits, so only the
    # mean is held to a tight bound (the shipped model's figures are in docs/performance.md)
    assert int8.quantized is not None and 0 < int8.quantized.max_abs < 0.5
    assert int8.quantized.mean_abs < 0.02
