"""Filter visualisation by gradient ascent and taggrams, on the tiny model of conftest.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_RATE_HZ, tiny_arch, tone, write_audio
from typer.testing import CliRunner

from musictag.audio import WindowRule
from musictag.cli import app
from musictag.nets import build_model
from musictag.viz.filters import (
    context_samples,
    conv_layers,
    default_layers,
    estimate_filters,
    parse_layers,
)
from musictag.viz.taggram import rule_spans

pytest.importorskip("matplotlib")

WINDOW = 6561  # the tiny model's window
#: The tiny model's first layer: 27-sample filters with stride 27 at 8 kHz, so the gradient it
#: sends back is its kernel repeated every 27 samples: a line spectrum on multiples of 8000/27 Hz,
#: which are exact bins of a 729-point FFT.
HARMONIC_HZ = TINY_RATE_HZ / 27
BIN_HZ = TINY_RATE_HZ / 729


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(tiny_arch()).eval()


def band_pass_model(harmonics: list[int]) -> torch.nn.Module:
    """The tiny model with its first-layer filters set to Hann-windowed cosines."""
    model = tiny_model()
    conv = model.frontend[0]
    taps = np.arange(conv.kernel_size[0])
    kernels = [np.hanning(len(taps)) * np.cos(2 * np.pi * k * HARMONIC_HZ * taps / TINY_RATE_HZ)
               for k in harmonics]
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(np.array(kernels), dtype=torch.float32)[:, None, :])
        conv.bias.zero_()
    return model


def test_gradient_ascent_recovers_known_band_pass_filters():
    harmonics = [9, 2, 6, 3, 12, 4, 11, 7]  # one per filter, deliberately unsorted
    model = band_pass_model(harmonics)
    layer = conv_layers(model)[0]
    assert (layer.conv, layer.probe, layer.n_filters) == ("frontend.0", "frontend.1", 8)
    [result] = estimate_filters(model, [layer], sample_rate_hz=TINY_RATE_HZ,
                                max_samples=WINDOW, steps=10, seed=3)
    assert result.estimates.shape == (8, 729) and result.context_samples == 729
    np.testing.assert_allclose(result.peak_hz, np.array(harmonics) * HARMONIC_HZ,
                               atol=BIN_HZ / 2)
    assert result.order.tolist() == np.argsort(harmonics).tolist()
    # The estimate is the kernel itself, repeated: its shape, not only its peak, is recovered.
    period = result.estimates[:, 27 * 13:27 * 14]
    kernels = model.frontend[0].weight[:, 0].numpy()
    correlation = [np.corrcoef(p, k)[0, 1] for p, k in zip(period, kernels, strict=True)]
    assert min(correlation) > 0.9


def test_deep_layers_see_the_estimate_inside_silence():
    model = tiny_model()
    layers = conv_layers(model)
    # frontend, five modules, the 1x1 dense convolution of the head
    assert [layer.conv for layer in layers] == ["frontend.0", *(f"blocks.{i}.0" for i in range(5)),
                                                "head.dense.0"]
    # 729 samples = 27 frames of 27: modules 1-3 (layers 2-4) see three or more frames.
    assert [layer.number for layer in default_layers(model, layers)] == [1, 2, 3, 4]
    contexts = [context_samples(model, layer, input_samples=729, max_samples=WINDOW)
                for layer in layers]
    assert contexts == [729, 729, 729, 729, 2187, 6561, 6561]

    deep = layers[4]
    before, after, again = (
        estimate_filters(model, [deep], sample_rate_hz=TINY_RATE_HZ, max_samples=WINDOW,
                         steps=steps, seed=1)[0].estimates for steps in (0, 3, 3))
    assert after.shape == (16, 729) and np.isfinite(after).all()
    assert np.abs(after - before).mean() > 0.1  # the gradient reached the centred estimate
    np.testing.assert_array_equal(after, again)  # seeded: same command, same picture


def test_parse_layers():
    layers = conv_layers(tiny_model())
    assert [layer.number for layer in parse_layers("1-3,6", layers)] == [1, 2, 3, 6]
    assert len(parse_layers("all", layers)) == 7
    with pytest.raises(ValueError, match="layers 1-7"):
        parse_layers("2,9", layers)
    with pytest.raises(ValueError, match="bad layer list"):
        parse_layers("one", layers)


def read_png(path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def assert_not_blank(pixels: np.ndarray) -> None:
    assert pixels[..., :3].std() > 0.1


def test_filters_command_writes_figures_and_arrays(tiny_model, tmp_path):
    target = tmp_path / "pictures" / "filters.png"
    result = CliRunner().invoke(app, ["filters", "--model", "tiny-test", "--steps", "3",
                                      "--seed", "5", "-o", str(target), "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(target), str(tmp_path / "pictures/filters-waveforms.png"),
                                     str(tmp_path / "pictures/filters.npz")]

    spectra = read_png(target)  # four layers: two rows of three 4.6 x 3.4 in panels at 100 dpi
    assert spectra.shape[:2] == (2 * 340 + 70, 3 * 460)
    assert_not_blank(spectra)
    waveforms = read_png(tmp_path / "pictures/filters-waveforms.png")  # four rows of four
    assert waveforms.shape[:2] == (4 * 170 + 70, 4 * 320)
    assert_not_blank(waveforms)

    arrays = np.load(tmp_path / "pictures/filters.npz")
    assert arrays["layers"].tolist() == [1, 2, 3, 4]
    assert arrays["layer_names"].tolist() == ["frontend.0", "blocks.0.0", "blocks.1.0",
                                              "blocks.2.0"]
    assert float(arrays["sample_rate_hz"]) == TINY_RATE_HZ
    assert (int(arrays["input_samples"]), int(arrays["steps"]), int(arrays["seed"])) == (729, 3, 5)
    np.testing.assert_allclose(arrays["frequencies_hz"], np.arange(365) * BIN_HZ)
    for number in (1, 2, 3, 4):
        estimates, spectra_, peak, order = (arrays[f"layer{number}_{name}"] for name in
                                            ("estimates", "spectra", "peak_hz", "order"))
        assert estimates.shape == (8, 729) and spectra_.shape == (8, 365)
        np.testing.assert_array_equal(peak, arrays["frequencies_hz"][spectra_.argmax(axis=1)])
        assert sorted(order.tolist()) == list(range(8)) and (np.diff(peak[order]) >= 0).all()
        assert int(arrays[f"layer{number}_context_samples"]) == 729


def test_filters_command_rejects_bad_requests(tiny_model, tmp_path):
    runner = CliRunner()
    wrong_suffix = runner.invoke(app, ["filters", "--model", "tiny-test", "-o",
                                       str(tmp_path / "f.jpg")])
    assert wrong_suffix.exit_code == 2 and "give a .png name" in wrong_suffix.output
    missing_layer = runner.invoke(app, ["filters", "--model", "tiny-test", "--layers", "12",
                                        "-o", str(tmp_path / "f.png")])
    assert missing_layer.exit_code == 2 and "layers 1-7" in missing_layer.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("seconds", "n_windows"), [(10.5, 13), (8.5, 10), (1.2, 1)])
def test_taggram_window_count_follows_the_track_length(tiny_model, tmp_path, seconds, n_windows):
    # Windows of 6561 samples at 8 kHz: 10.5 s leaves 5268 samples after 12 windows, at least half
    # a window, so one more aligned to the end; 8.5 s leaves 2390 and 1.2 s 3039, dropped.
    track = write_audio(tmp_path / "track.wav", tone(seconds, TINY_RATE_HZ), TINY_RATE_HZ)
    result = CliRunner().invoke(app, ["taggram", str(track), "--model", "tiny-test",
                                      "--format", "json", "--top", "3"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    total = round(seconds * TINY_RATE_HZ)
    assert record["n_windows"] == n_windows == len(record["start_s"]) == len(record["end_s"])
    assert list(record["scores"]) and len(record["scores"]) == 3
    assert all(len(scores) == n_windows for scores in record["scores"].values())
    assert record["end_s"][-1] == pytest.approx(min(total, n_windows * WINDOW) / TINY_RATE_HZ,
                                                abs=1e-3)
    assert record["duration_s"] == pytest.approx(seconds)
    if n_windows > 1:
        assert record["start_s"][1] == pytest.approx(WINDOW / TINY_RATE_HZ, abs=1e-3)


def test_evenly_spaced_windows_span_the_track():
    rule = WindowRule(kind="evenly_spaced", n_windows=16)
    spans = rule_spans(100_000, window_samples=WINDOW, rule=rule)
    assert len(spans) == 16 and spans[0, 0] == 0 and spans[-1, 1] == 100_000
    assert (np.diff(spans[:, 0]) > 0).all() and (spans[:, 1] - spans[:, 0] == WINDOW).all()
    assert rule_spans(4000, window_samples=WINDOW, rule=rule).tolist() == [[0, 4000]]


def test_taggram_command_draws_the_top_tags(tiny_model, tmp_path):
    track = write_audio(tmp_path / "track.wav", tone(6.0, TINY_RATE_HZ), TINY_RATE_HZ)
    target = tmp_path / "taggram.png"
    result = CliRunner().invoke(app, ["taggram", str(track), "--model", "tiny-test", "--top", "4",
                                      "-o", str(target)])
    assert result.exit_code == 0, result.output
    pixels = read_png(target)
    assert pixels.shape[:2] == (140 + 4 * 32, 1100)
    assert_not_blank(pixels)

    missing = CliRunner().invoke(app, ["taggram", str(tmp_path / "none.wav"), "--model",
                                       "tiny-test", "-o", str(target)])
    assert missing.exit_code == 2 and "none.wav: no such file" in missing.output
