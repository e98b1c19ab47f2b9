"""Shared fixtures: a tiny model registered like a real one, and real audio files of each format."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TINY_RATE_HZ = 8000
TINY_LABELS = [f"tag{i:02d}" for i in range(10)]


def tiny_arch() -> dict:
    """A 3^5 SampleCNN over 6561 samples: the real architecture at a size tests can afford."""
    return {"name": "samplecnn", "m": 3, "n_modules": 5, "first_filter": 27, "first_stride": 27,
            "first_channels": 8, "module_channels": [8, 8, 8, 16, 16], "dense_channels": 16,
            "n_classes": len(TINY_LABELS), "dropout": 0.5}


def write_tiny_model(folder: Path, name: str = "tiny-test") -> Path:
    """A card plus seeded random weights in ``folder``; returns the card path."""
    import torch

    from musictag.nets import build_model
    from musictag.weights import save_weights

    torch.manual_seed(0)
    model = build_model(tiny_arch()).eval()
    card = {"name": name, "arch": tiny_arch(), "labels": TINY_LABELS,
            "sample_rate_hz": TINY_RATE_HZ, "window_samples": 6561,
            "averaging": {"rule": "consecutive"}, "weights": {"file": f"{name}.safetensors"},
            "description": "random weights for plumbing tests", "training_data": "none",
            "source": "tests", "licence": "MIT"}
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / f"{name}.safetensors",
                 {k: v.numpy() for k, v in model.state_dict().items()}, card)
    card_path = folder / f"{name}.json"
    card_path.write_text(json.dumps(card))
    return card_path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny model's card, also registered through MUSICTAG_MODELS for the whole session."""
    folder = tmp_path_factory.mktemp("cards")
    card_path = write_tiny_model(folder)
    os.environ["MUSICTAG_MODELS"] = str(folder)
    return card_path


def tone(seconds: float, rate: int, freq_hz: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.3 * np.sin(2 * np.pi * freq_hz * t).astype(np.float32)
    return np.repeat(signal[:, None], channels, axis=1) if channels > 1 else signal


def write_audio(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Write with libsndfile, or FFmpeg (PyAV) for containers libsndfile can't write."""
    if path.suffix in (".m4a", ".webm"):
        import av

        codec = "aac" if path.suffix == ".m4a" else "libopus"
        out_rate = 48000 if codec == "libopus" else rate
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=out_rate)
            stream.layout = "mono"
            data = samples if samples.ndim == 1 else samples.mean(axis=1)
            frame = av.AudioFrame.from_ndarray(data[None, :].astype(np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate = rate
            resampler = av.AudioResampler(format=stream.format.name, layout="mono",
                                          rate=out_rate)
            for converted in resampler.resample(frame):
                for packet in stream.encode(converted):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        return path
    subtype = {".ogg": "VORBIS", ".opus": "OPUS", ".mp3": "MPEG_LAYER_III"}.get(path.suffix)
    fmt = {".ogg": "OGG", ".opus": "OGG", ".mp3": "MP3"}.get(path.suffix)
    soundfile.write(str(path), samples, rate, subtype=subtype, format=fmt)
    return path
