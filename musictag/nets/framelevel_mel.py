"""The frame-level mel-spectrogram model of Table 3: the baseline SampleCNN is measured against.

128 mel bands over an FFT of 729 points with the row's window and hop, ``log(1 + 10|A|)``
compression, then standardised with the training set's mean and standard deviation (the paper
normalises the mel input, never the raw waveform). Those two numbers are buffers, so they travel
inside the weights file and ``train`` sets them before the first step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModelError
from .registry import register_architecture
from .samplecnn import TaggingHead, conv_module, default_module_channels
from .spectrogram import MelSpectrogram


@dataclass(frozen=True)
class MelFrameCNNConfig:
    """Defaults are the best mel row of Table 3 (n=6, window 243, hop 81)."""

    n_modules: int = 6
    window: int = 243
    hop: int = 81
    n_fft: int = 729
    n_mels: int = 128
    sample_rate_hz: int = 22050
    compression: float = 10.0
    m: int = 3
    module_channels: tuple[int, ...] = default_module_channels(6)
    dense_channels: int = 512
    n_classes: int = 50
    dropout: float = 0.5

    @property
    def input_samples(self) -> int:
        return self.hop * self.m**self.n_modules


@register_architecture("framelevel_mel", MelFrameCNNConfig)
class MelFrameCNN(nn.Module):
    """Raw waveform ``(batch, samples)`` -> log-mel frames -> SampleCNN's modules and head."""

    def __init__(self, config: MelFrameCNNConfig):
        super().__init__()
        if len(config.module_channels) != config.n_modules:
            raise ModelError("module_channels must have n_modules entries")
        self.config = config
        self.mel = MelSpectrogram(sample_rate_hz=config.sample_rate_hz, n_fft=config.n_fft,
                                  hop=config.hop, win_length=config.window, n_mels=config.n_mels,
                                  power=1.0, padding="frames", pad_mode="constant")
        self.register_buffer("input_mean", torch.zeros(()))
        self.register_buffer("input_std", torch.ones(()))
        channels = (config.n_mels, *config.module_channels)
        self.blocks = nn.Sequential(*(conv_module(channels[i], channels[i + 1], config.m)
                                      for i in range(config.n_modules)))
        self.head = TaggingHead(channels[-1], config.dense_channels, config.n_classes,
                                config.dropout)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """The compressed, unstandardised input; ``train`` averages it to set the statistics."""
        return torch.log1p(self.config.compression * self.mel(waveform))

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        standardised = (self.log_mel(waveform) - self.input_mean) / self.input_std
        return self.blocks(standardised)

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.head.embed(self.features(waveform))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(waveform))
