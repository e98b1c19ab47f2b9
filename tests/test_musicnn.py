"""musicnn's own taggers: the Saver V2 reader, the layer map, the input pipeline and parity.

The parity test needs the ``musicnn`` 0.1.0 wheel (29 MB, never committed or downloaded here):
point ``MUSICTAG_MUSICNN_WHEEL`` at the .whl or an unpacked copy, have the package installed
(its folder is read, never imported, so TensorFlow need not work), or have pulled a musicnn card
into the default cache. Without it, or without ../shared, those tests skip.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED
from typer.testing import CliRunner

from musictag import hub
from musictag.cli import app
from musictag.convert.musicnn import checkpoint_to_state_dict, open_checkpoint
from musictag.convert.tf_checkpoint import Checkpoint, CheckpointError, masked_crc32c
from musictag.nets import build_model
from musictag.registry import available_models, get_card

REFERENCE = SHARED / "reference-checkpoints" / "musicnn-pip" / "reference_outputs.npz"
UPSTREAM_NAMES = {"musicnn-mtt-musicnn": "MTT_musicnn", "musicnn-mtt-vgg": "MTT_vgg",
                  "musicnn-msd-musicnn": "MSD_musicnn", "musicnn-msd-vgg": "MSD_vgg"}


def musicnn_source() -> Path | None:
    configured = os.environ.get("MUSICTAG_MUSICNN_WHEEL")
    if configured:
        return Path(configured)
    spec = importlib.util.find_spec("musicnn")
    if spec is not None and spec.origin:
        return Path(spec.origin).parent
    pulled = sorted((hub.cache_dir() / "downloads").glob("*-musicnn-0.1.0-py3-none-any.whl"))
    return pulled[0] if pulled else None


def need_wheel() -> Path:
    source = musicnn_source()
    if source is None or not source.exists():
        pytest.skip("musicnn wheel not available (set MUSICTAG_MUSICNN_WHEEL)")
    return source


# --- a Saver V2 writer, just enough to build checkpoints without TensorFlow -------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _field(number: int, payload: int | bytes, *, fixed32: bool = False) -> bytes:
    if fixed32:
        return _varint(number << 3 | 5) + int(payload).to_bytes(4, "little")
    if isinstance(payload, bytes):
        return _varint(number << 3 | 2) + _varint(len(payload)) + payload
    return _varint(number << 3) + _varint(payload)


def _block(records: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in records)
    return body + (0).to_bytes(4, "little") + (1).to_bytes(4, "little")


def write_checkpoint(prefix: str, tensors: dict[str, np.ndarray]) -> None:
    """``prefix.index`` + ``prefix.data-00000-of-00001`` as TensorFlow's tensor bundle writes."""
    dtype_codes = {np.dtype("float32"): 1, np.dtype("int64"): 9}
    data, records = b"", [(b"", _field(1, 1) + _field(3, _field(1, 1)))]
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        raw = array.tobytes()
        shape = b"".join(_field(2, _field(1, size)) for size in array.shape)
        entry = (_field(1, dtype_codes[array.dtype]) + _field(2, shape) + _field(4, len(data))
                 + _field(5, len(raw)) + _field(6, masked_crc32c(raw), fixed32=True))
        records.append((name.encode(), entry))
        data += raw
    Path(prefix + ".data-00000-of-00001").write_bytes(data)
    table = b""
    handles = []
    for block in (_block(records), _block([])):  # the data block, then the (empty) metaindex
        handles.append(_varint(len(table)) + _varint(len(block)))
        table += block + b"\0" + masked_crc32c(block + b"\0").to_bytes(4, "little")
    index = _block([(records[-1][0], handles[0])])
    index_handle = _varint(len(table)) + _varint(len(index))
    table += index + b"\0" + masked_crc32c(index + b"\0").to_bytes(4, "little")
    footer = (handles[1] + index_handle).ljust(40, b"\0") + (0xDB4775248B80FB57).to_bytes(8,
                                                                                         "little")
    Path(prefix + ".index").write_bytes(table + footer)


# --- the reader ----------------------------------------------------------------------------

def test_reader_reads_back_names_shapes_dtypes_and_values(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"conv2d/kernel": rng.standard_normal((7, 38, 1, 4)).astype(np.float32),
               "dense/bias": rng.standard_normal(5).astype(np.float32),
               "global_step": np.array(1234, dtype=np.int64)}
    write_checkpoint(str(tmp_path / "model"), tensors)
    checkpoint = Checkpoint(tmp_path / "model")
    assert checkpoint.names() == sorted(tensors)
    for name, expected in tensors.items():
        got = checkpoint.read(name)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_reader_rejects_corrupt_tensor_bytes_and_non_checkpoints(tmp_path):
    write_checkpoint(str(tmp_path / "model"), {"w": np.arange(6, dtype=np.float32)})
    data = tmp_path / "model.data-00000-of-00001"
    damaged = bytearray(data.read_bytes())
    damaged[5] ^= 0xFF
    data.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="CRC"):
        Checkpoint(tmp_path / "model").read("w")
    (tmp_path / "junk.index").write_bytes(b"not a table" * 10)
    with pytest.raises(CheckpointError, match="junk.index"):
        Checkpoint(tmp_path / "junk")


def test_wheel_checkpoint_has_the_documented_tensors():
    with open_checkpoint(need_wheel(), "musicnn/MTT_musicnn") as checkpoint:
        model_tensors = [n for n in checkpoint.names()
                         if "Adam" not in n and n not in ("beta1_power", "beta2_power")]
        assert len(model_tensors) == 64
        assert checkpoint.shape("conv2d/kernel") == (7, 38, 1, 204)
        assert checkpoint.read("dense/kernel").shape == (1506, 200)
        assert checkpoint.read("dense_1/kernel").shape == (200, 50)


# --- the layer map -------------------------------------------------------------------------

def _tf_layout_vgg() -> dict[str, np.ndarray]:
    """Random tensors named and shaped as ``musicnn/models.py:vgg`` creates them, plus Adam."""
    rng = np.random.default_rng(1)
    tensors = {"beta1_power": np.ones((), np.float32), "dense/kernel": rng.random((256, 50)),
               "dense/bias": rng.random(50), "dense/kernel/Adam": rng.random((256, 50))}
    for i in range(6):
        suffix = f"_{i}" if i else ""
        channels = 1 if i == 0 else 128
        for part in ("gamma", "beta", "moving_mean", "moving_variance"):
            tensors[f"batch_normalization{suffix}/{part}"] = rng.random(channels)
    for i in range(1, 6):
        tensors[f"{i}CNN/kernel"] = rng.random((3, 3, 1 if i == 1 else 128, 128))
        tensors[f"{i}CNN/bias"] = rng.random(128)
    return {name: value.astype(np.float32) for name, value in tensors.items()}


def test_vgg_layer_map_transposes_kernels_and_accounts_for_every_tensor(tmp_path):
    tensors = _tf_layout_vgg()
    write_checkpoint(str(tmp_path / "vgg"), tensors)
    state = checkpoint_to_state_dict(Checkpoint(tmp_path / "vgg"), {"name": "musicnn_vgg"})
    model = build_model({"name": "musicnn_vgg"})
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    np.testing.assert_array_equal(state["convs.1.weight"][5, 7, 0, 2],
                                  tensors["2CNN/kernel"][0, 2, 7, 5])
    np.testing.assert_array_equal(state["output_layer.weight"], tensors["dense/kernel"].T)
    np.testing.assert_array_equal(state["norms.4.running_var"],
                                  tensors["batch_normalization_5/moving_variance"])

    write_checkpoint(str(tmp_path / "extra"), {**tensors, "dense_2/bias": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match="left unconverted: dense_2/bias"):
        checkpoint_to_state_dict(Checkpoint(tmp_path / "extra"), {"name": "musicnn_vgg"})
    del tensors["5CNN/bias"]
    write_checkpoint(str(tmp_path / "short"), tensors)
    with pytest.raises(CheckpointError, match="5CNN/bias"):
        checkpoint_to_state_dict(Checkpoint(tmp_path / "short"), {"name": "musicnn_vgg"})


# --- the input pipeline --------------------------------------------------------------------

def test_window_frames_line_up_with_the_whole_track_spectrogram():
    """A 47872-sample window's frames 1..186 are upstream's; only the first sees padding."""
    model = build_model({"name": "musicnn_vgg"}).eval()
    assert model.config.input_samples == 187 * 256
    signal = torch.from_numpy(np.random.default_rng(2).standard_normal(3 * 47872) * 0.1).float()
    with torch.no_grad():
        whole = model.log_mel(signal[None])[0]
        window = model.patches(signal[47872:2 * 47872][None])[0]
    assert window.shape == (187, 96)
    torch.testing.assert_close(window[1:], whole[188:374], atol=1e-3, rtol=0)
    assert (window[0] - whole[187]).abs().max() > 0.01


# --- parity with the package's own outputs -------------------------------------------------

def test_all_four_models_match_the_package_reference_outputs(tmp_path, monkeypatch):
    if not REFERENCE.is_file():
        pytest.skip("../shared reference outputs absent")
    source = need_wheel()
    monkeypatch.setenv("MUSICTAG_CACHE", str(tmp_path))
    result = CliRunner().invoke(app, ["models", "import", str(source)])
    assert result.exit_code == 0, result.output
    written = [Path(line.split("\t")[1]) for line in result.stdout.splitlines()]
    assert sorted(p.stem for p in written) == sorted(UPSTREAM_NAMES)
    from musictag.backends.torch_backend import load_model
    from musictag.weights import read_weights

    reference = np.load(REFERENCE)
    waveform = torch.from_numpy(reference["inputs_96000"])
    for path in written:
        card = get_card(path.stem)
        upstream = UPSTREAM_NAMES[card.name]
        assert card.labels == list(reference[f"{upstream}_tags"])
        assert "Pompeu Fabra" in read_weights(path)[1]["licence_notice"]
        model = load_model(card, path)
        with torch.no_grad():
            log_mel = model.log_mel(waveform)  # upstream: one spectrogram, cut into patches
            patches = torch.cat([log_mel[:, :187], log_mel[:, 187:374]])
            scores = torch.sigmoid(model.forward_patches(patches)).reshape(2, 2, -1).mean(0)
        np.testing.assert_allclose(scores.numpy(), reference[upstream], atol=1e-4, rtol=0,
                                   err_msg=card.name)


def test_cards_carry_the_upstream_facts():
    cards = {card.name: card for card in available_models()
             if card.weights.get("converter") == "musicnn_tf"}
    assert sorted(cards) == sorted(UPSTREAM_NAMES)
    for card in cards.values():
        assert card.sample_rate_hz == 16000 and card.window_samples == 47872
        assert card.window_rule.kind == "consecutive" and card.licence == "ISC"
        assert card.weights["sha256"] == ("f38a4890c648c1ddbb141c5d96d2b0a8"
                                          "cfcd36746002d896989f7b88beb65cfa")
        assert 0.87 < card.reported["roc_auc"] < 0.91
