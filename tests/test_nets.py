"""The model family of Lee et al. 2017 against the numbers of the paper's Tables 1-3.

The table rows are hard-coded here, each block citing its table in ../shared/PAPER.md; they are the
paper's numbers, never values computed by musictag.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from musictag.nets import build_model, config_from_dict, config_to_dict
from musictag.nets.framelevel_mel import MelFrameCNN, MelFrameCNNConfig
from musictag.nets.samplecnn import SampleCNN, SampleCNNConfig, default_module_channels
from musictag.nets.spectrogram import hann_window, mel_filterbank

torch.set_num_threads(1)

# Table 1: parameters of each weight layer of the 3^9 model, in order: conv 3-128 (strided), nine
# conv 3 modules (128, 128, 256 x6, 512), conv 1-512 acting as a dense layer, the 50-way output.
TABLE1_PARAMS = [512, 49280, 49280, 98560, *([196864] * 5), 393728, 262656, 25650]


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Convolutions and linear layers in forward order (BatchNorm is not counted in Table 1)."""
    return [m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Linear)]


def test_default_model_matches_table1_layer_by_layer():
    model = build_model({"name": "samplecnn"})
    counts = [sum(p.numel() for p in layer.parameters()) for layer in weight_layers(model)]
    assert counts == TABLE1_PARAMS
    assert model.config.input_samples == 59049


def test_default_card_is_the_table1_model():
    """The shipped default card's architecture is the 3^9 model above, not a variant of it."""
    card = json.loads((Path(__file__).resolve().parents[1] / "models" / "samplecnn.json")
                      .read_text())
    assert config_from_dict(card["arch"]) == SampleCNNConfig()
    assert card["window_samples"] == 59049 and card["sample_rate_hz"] == 22050


# Table 2: (m, input samples, n, frames after the strided first layer, its filter length & stride).
TABLE2_ROWS = [
    *[(2, 16384, n, 16384 // s, s) for n, s in
      [(6, 256), (7, 128), (8, 64), (9, 32), (10, 16), (11, 8), (12, 4), (13, 2)]],
    *[(2, 32768, n, 32768 // s, s) for n, s in
      [(7, 256), (8, 128), (9, 64), (10, 32), (11, 16), (12, 8), (13, 4), (14, 2)]],
    *[(3, 19683, n, 19683 // s, s) for n, s in
      [(3, 729), (4, 243), (5, 81), (6, 27), (7, 9), (8, 3)]],
    *[(3, 59049, n, 59049 // s, s) for n, s in
      [(4, 729), (5, 243), (6, 81), (7, 27), (8, 9), (9, 3)]],
    *[(4, 16384, n, 16384 // s, s) for n, s in [(3, 256), (4, 64), (5, 16), (6, 4)]],
    *[(4, 65536, n, 65536 // s, s) for n, s in [(4, 256), (5, 64), (6, 16), (7, 4)]],
    *[(5, 15625, n, 15625 // s, s) for n, s in [(3, 125), (4, 25), (5, 5)]],
    *[(5, 78125, n, 78125 // s, s) for n, s in [(4, 125), (5, 25), (6, 5)]],
]
# The "frames" column of Table 2, row by row, as printed (a check on the transcription above).
TABLE2_FRAMES = [64, 128, 256, 512, 1024, 2048, 4096, 8192,
                 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
                 27, 81, 243, 729, 2187, 6561,
                 81, 243, 729, 2187, 6561, 19683,
                 64, 256, 1024, 4096,
                 256, 1024, 4096, 16384,
                 125, 625, 3125,
                 625, 3125, 15625]


def test_table2_transcription():
    assert [row[3] for row in TABLE2_ROWS] == TABLE2_FRAMES


def narrow(config: SampleCNNConfig) -> SampleCNNConfig:
    """The same geometry with 8 channels everywhere: the time axis does not depend on width."""
    return dataclasses.replace(config, first_channels=8, module_channels=(8,) * config.n_modules,
                               dense_channels=8)


@pytest.mark.parametrize(("m", "input_samples", "n", "frames", "stride"), TABLE2_ROWS,
                         ids=[f"{r[0]}^{r[2]}-{r[1]}" for r in TABLE2_ROWS])
def test_table2_row_maps_its_input_to_one_frame_of_50(m, input_samples, n, frames, stride):
    config = SampleCNNConfig.mn(m, n, stride)
    assert config.input_samples == input_samples
    assert len(default_module_channels(n)) == n
    build_model(config)  # the full-width model of the row builds
    model = SampleCNN(narrow(config)).eval()
    with torch.inference_mode():
        waveform = torch.randn(2, input_samples)
        assert model.frontend(waveform.unsqueeze(1)).shape[-1] == frames
        assert model.features(waveform).shape[-1] == 1
        assert model(waveform).shape == (2, 50)


# Table 3: (n, window = filter length, hop = stride); every model takes 59049 samples.
TABLE3_MEL_ROWS = [(4, 729, 729), (5, 729, 243), (5, 243, 243), (6, 243, 81), (6, 81, 81)]
TABLE3_RAW_FRAME_ROWS = [(4, 729, 729), (5, 729, 243), (5, 243, 243), (6, 243, 81), (6, 81, 81)]
TABLE3_SAMPLE_ROWS = [(7, 27, 27), (8, 9, 9), (9, 3, 3)]


@pytest.mark.parametrize(("n", "window", "hop"), TABLE3_RAW_FRAME_ROWS + TABLE3_SAMPLE_ROWS)
def test_table3_raw_waveform_rows(n, window, hop):
    config = SampleCNNConfig.mn(3, n, hop, first_filter=window)
    assert config.input_samples == 59049
    model = build_model(config_to_dict(config)).eval()  # through the card's dict form
    assert model.frontend[0].kernel_size == (window,) and model.frontend[0].stride == (hop,)
    with torch.inference_mode():
        waveform = torch.randn(2, 59049)
        assert model.frontend(waveform.unsqueeze(1)).shape[-1] == 59049 // hop
        assert model(waveform).shape == (2, 50)


def mel_config(n: int, window: int, hop: int) -> MelFrameCNNConfig:
    return MelFrameCNNConfig(n_modules=n, window=window, hop=hop,
                             module_channels=default_module_channels(n))


@pytest.mark.parametrize(("n", "window", "hop"), TABLE3_MEL_ROWS)
def test_table3_mel_rows(n, window, hop):
    config = mel_config(n, window, hop)
    assert (config.n_mels, config.n_fft, config.input_samples) == (128, 729, 59049)
    model = build_model(config_to_dict(config)).eval()
    with torch.inference_mode():
        waveform = torch.randn(2, 59049)
        log_mel = model.log_mel(waveform)
        assert log_mel.shape == (2, 128, 59049 // hop)
        assert model.features(waveform).shape[-1] == 1
        assert model(waveform).shape == (2, 50)


def numpy_mel_magnitude(signal: np.ndarray, *, n_fft: int, window: int, hop: int,
                        rate: int) -> np.ndarray:
    """An independent reference: framed rfft magnitude (Hann window centred in the FFT) @ mel."""
    pad = (n_fft - hop) // 2
    padded = np.pad(signal.astype(np.float64), pad)
    taper = np.zeros(n_fft)
    start = (n_fft - window) // 2
    taper[start:start + window] = hann_window(window)
    n_frames = (len(padded) - n_fft) // hop + 1
    frames = np.stack([padded[i * hop:i * hop + n_fft] * taper for i in range(n_frames)])
    magnitude = np.abs(np.fft.rfft(frames, axis=1))  # (frames, bins)
    filters = mel_filterbank(sample_rate_hz=rate, n_fft=n_fft, n_mels=128)  # (bins, mels)
    return (magnitude @ filters).T


def test_mel_input_is_log_1_plus_10_magnitude():
    config = mel_config(6, 243, 81)
    model = MelFrameCNN(config).eval()
    rng = np.random.default_rng(0)
    t = np.arange(59049) / config.sample_rate_hz
    signal = (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.01 * rng.standard_normal(59049))
    with torch.inference_mode():
        log_mel = model.log_mel(torch.tensor(signal[None], dtype=torch.float32))[0].numpy()
        doubled = model.log_mel(torch.tensor(2 * signal[None], dtype=torch.float32))[0].numpy()
    reference = numpy_mel_magnitude(signal, n_fft=729, window=243, hop=81,
                                    rate=config.sample_rate_hz)
    np.testing.assert_allclose(log_mel, np.log1p(10.0 * reference), atol=2e-3, rtol=1e-3)
    # |A| is a magnitude, linear in amplitude, so expm1 of the input doubles with the signal
    np.testing.assert_allclose(np.expm1(doubled), 2 * np.expm1(log_mel), rtol=1e-3, atol=1e-3)
    with torch.inference_mode():
        assert float(model.log_mel(torch.zeros(1, 59049)).abs().max()) < 1e-6  # log(1 + 0)


def test_mel_standardisation_is_stored_with_the_weights():
    torch.manual_seed(0)
    model = MelFrameCNN(mel_config(4, 729, 729)).eval()
    state = model.state_dict()
    assert float(state["input_mean"]) == 0.0 and float(state["input_std"]) == 1.0
    waveform = 0.1 * torch.randn(2, 59049)
    with torch.inference_mode():
        before = model(waveform)
        model.input_mean.fill_(0.7)
        model.input_std.fill_(2.5)
        after = model(waveform)
        expected_features = model.blocks((model.log_mel(waveform) - 0.7) / 2.5)
        np.testing.assert_allclose(model.features(waveform), expected_features, atol=1e-5)
    assert not torch.allclose(before, after, atol=1e-4)

    fresh = MelFrameCNN(mel_config(4, 729, 729)).eval()
    fresh.load_state_dict(model.state_dict())  # the statistics travel in the state dict
    assert float(fresh.input_mean) == pytest.approx(0.7)
    assert float(fresh.input_std) == pytest.approx(2.5)
    with torch.inference_mode():
        torch.testing.assert_close(fresh(waveform), after)


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError, match="module_channels"):
        SampleCNN(dataclasses.replace(SampleCNNConfig(), module_channels=(128,) * 8))
    with pytest.raises(ValueError, match="even"):
        SampleCNN(SampleCNNConfig.mn(3, 5, 243, first_filter=730))
    with pytest.raises(ValueError, match="no field"):
        config_from_dict({"name": "samplecnn", "layers": 3})
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model({"name": "not-a-net"})


@pytest.mark.parametrize("config", [SampleCNNConfig.mn(3, 5, 3), SampleCNNConfig.mn(2, 6, 4),
                                    SampleCNNConfig.mn(3, 4, 9, first_filter=27)])
def test_channels_last_2d_form_trains_as_the_conv1d_form(config):
    """Same outputs, gradients and BatchNorm statistics in fp32, same state-dict names."""
    torch.manual_seed(0)
    reference = SampleCNN(config).train()
    fast = SampleCNN(config).train().use_channels_last_2d()
    fast.load_state_dict(reference.state_dict())
    assert list(fast.state_dict()) == list(reference.state_dict())
    waveform = torch.randn(3, config.input_samples)
    outputs = []
    for model in (reference, fast):
        torch.manual_seed(1)  # the same dropout mask
        logits = model(waveform)
        logits.square().sum().backward()
        outputs.append(logits)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    for (name, p_ref), p_fast in zip(reference.named_parameters(), fast.parameters(),
                                     strict=True):
        torch.testing.assert_close(p_fast.grad, p_ref.grad, rtol=1e-3, atol=1e-5, msg=name)
    for (name, b_ref), b_fast in zip(reference.named_buffers(), fast.buffers(), strict=True):
        torch.testing.assert_close(b_fast, b_ref, rtol=1e-4, atol=1e-6, msg=name)
    reference.eval(), fast.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(waveform), reference(waveform), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fast.embed(waveform), reference.embed(waveform),
                                   rtol=1e-4, atol=1e-5)


def test_bf16_torch_backend_runs_the_channels_last_form_close_to_fp32(tiny_model):
    from musictag.backends.torch_backend import TorchBackend
    from musictag.registry import get_card

    card = get_card(str(tiny_model))
    weights = tiny_model.parent / card.weights["file"]
    exact = TorchBackend(card, weights, device="cpu", precision="fp32")
    fast = TorchBackend(card, weights, device="cpu", precision="bf16")
    assert fast.model.channels_last_2d and not exact.model.channels_last_2d
    windows = np.random.default_rng(0).uniform(-0.5, 0.5, (4, card.window_samples))
    np.testing.assert_allclose(fast.predict(windows), exact.predict(windows), atol=0.03)
