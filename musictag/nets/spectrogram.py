"""Spectrogram front-ends in plain torch (torchaudio has no build for the torch pinned here).

The short-time Fourier transform is a strided convolution with a fixed windowed DFT basis, so the
same module runs eagerly, under autocast and exported to ONNX without a complex-valued STFT op.
The mel filterbank follows the common formula (triangles between mel-spaced edges) with the HTK or
Slaney mel scale and optional Slaney area normalisation, which covers torchaudio's and librosa's
defaults.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError


def hz_to_mel(freq_hz: np.ndarray, scale: str) -> np.ndarray:
    freq_hz = np.asarray(freq_hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + freq_hz / 700.0)
    if scale != "slaney":
        raise ModelError(f"unknown mel scale {scale!r}")
    linear_step_hz, break_hz = 200.0 / 3, 1000.0
    log_step = math.log(6.4) / 27.0
    break_mel = break_hz / linear_step_hz
    return np.where(freq_hz >= break_hz,
                    break_mel + np.log(np.maximum(freq_hz, 1e-10) / break_hz) / log_step,
                    freq_hz / linear_step_hz)


def mel_to_hz(mel: np.ndarray, scale: str) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    if scale != "slaney":
        raise ModelError(f"unknown mel scale {scale!r}")
    linear_step_hz, break_hz = 200.0 / 3, 1000.0
    log_step = math.log(6.4) / 27.0
    break_mel = break_hz / linear_step_hz
    return np.where(mel >= break_mel, break_hz * np.exp(log_step * (mel - break_mel)),
                    mel * linear_step_hz)


def mel_filterbank(*, sample_rate_hz: int, n_fft: int, n_mels: int, f_min_hz: float = 0.0,
                   f_max_hz: float | None = None, scale: str = "htk",
                   norm: str | None = None) -> np.ndarray:
    """Triangular mel filters as a ``(n_fft // 2 + 1, n_mels)`` float64 matrix."""
    f_max_hz = sample_rate_hz / 2 if f_max_hz is None else f_max_hz
    bin_hz = np.linspace(0.0, sample_rate_hz / 2, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(f_min_hz, scale), hz_to_mel(f_max_hz, scale),
                                     n_mels + 2), scale)
    widths_hz = np.diff(edges_hz)
    distance = edges_hz[:, None] - bin_hz[None, :]
    rising = -distance[:-2] / widths_hz[:-1, None]
    falling = distance[2:] / widths_hz[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    elif norm is not None:
        raise ModelError(f"unknown mel norm {norm!r}")
    return weights.T


def hann_window(length: int, *, periodic: bool = True) -> np.ndarray:
    denominator = length if periodic else length - 1
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / max(denominator, 1))


class STFTMagnitude(nn.Module):
    """``(batch, samples)`` -> ``(batch, n_fft // 2 + 1, frames)`` magnitude (``power=1``) or power.

    ``padding`` is ``"center"`` (``n_fft // 2`` each side, like torch.stft) or ``"frames"``: pad
    ``(n_fft - hop) / 2`` each side so that ``samples / hop`` frames come out, as the paper's
    frame-level models need for their time axis to reduce to one frame.
    """

    def __init__(self, *, n_fft: int, hop: int, win_length: int | None = None,
                 power: float = 1.0, padding: str = "center", pad_mode: str = "reflect"):
        super().__init__()
        win_length = win_length or n_fft
        window = np.zeros(n_fft)
        offset = (n_fft - win_length) // 2
        window[offset:offset + win_length] = hann_window(win_length)
        n_bins = n_fft // 2 + 1
        phase = 2.0 * np.pi * np.outer(np.arange(n_bins), np.arange(n_fft)) / n_fft
        basis = np.concatenate([np.cos(phase), -np.sin(phase)]) * window
        self.register_buffer("basis", torch.tensor(basis, dtype=torch.float32).unsqueeze(1),
                             persistent=False)
        self.n_fft, self.hop, self.power, self.n_bins = n_fft, hop, power, n_bins
        if padding == "center":
            self.pad = (n_fft // 2, n_fft // 2)
        elif padding == "frames":
            if (n_fft - hop) % 2:
                raise ModelError("n_fft - hop must be even for frame padding")
            self.pad = ((n_fft - hop) // 2, (n_fft - hop) // 2)
        else:
            raise ModelError(f"unknown padding {padding!r}")
        self.pad_mode = pad_mode

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        padded = F.pad(waveform.unsqueeze(1), self.pad, mode=self.pad_mode)
        spectrum = F.conv1d(padded, self.basis, stride=self.hop)
        real, imag = spectrum[:, :self.n_bins], spectrum[:, self.n_bins:]
        power = real * real + imag * imag
        if self.power == 2.0:
            return power
        return power.clamp_min(1e-20).pow(self.power / 2.0)


class MelSpectrogram(nn.Module):
    """STFT magnitude/power followed by a fixed mel filterbank: ``(batch, n_mels, frames)``."""

    def __init__(self, *, sample_rate_hz: int, n_fft: int, hop: int, n_mels: int,
                 win_length: int | None = None, power: float = 2.0, f_min_hz: float = 0.0,
                 f_max_hz: float | None = None, scale: str = "htk", norm: str | None = None,
                 padding: str = "center", pad_mode: str = "reflect"):
        super().__init__()
        self.stft = STFTMagnitude(n_fft=n_fft, hop=hop, win_length=win_length, power=power,
                                  padding=padding, pad_mode=pad_mode)
        filters = mel_filterbank(sample_rate_hz=sample_rate_hz, n_fft=n_fft, n_mels=n_mels,
                                 f_min_hz=f_min_hz, f_max_hz=f_max_hz, scale=scale, norm=norm)
        self.register_buffer("filters", torch.tensor(filters.T, dtype=torch.float32),
                             persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.filters, self.stft(waveform))
