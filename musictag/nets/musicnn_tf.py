"""The taggers of the ``musicnn`` package (Pons & Serra 2019), rebuilt to run its own checkpoints.

Two families, exactly as ``musicnn/models.py`` (0.1.0) builds them in TF1, so the converted
checkpoints (:mod:`musictag.convert.musicnn`) load with every tensor used:

- ``musicnn_tf``: a musically motivated front-end (timbral convolutions spanning 40 % and 70 % of
  the mel axis, temporal convolutions of 128/64/32 frames, each max-pooled over frequency), a
  mid-end of three 1-d convolutions with residual connections whose outputs are stacked with the
  front-end's (dense connections), and a back-end of max- and mean-pooling over time, a 200-unit
  dense layer (the penultimate features) and the output layer.
- ``musicnn_vgg``: five 3x3 convolution layers of 128 filters with max-pooling, flattened.

Both read a log-mel patch of 187 frames (3 s at 16 kHz, hop 256). The input pipeline is
reproduced from ``musicnn/extractor.py``: librosa's default mel spectrogram (n_fft 512, periodic
Hann window, centred frames, power 2, Slaney mel scale and area normalisation), rounded to
float16 as the package stores it, then ``log10(10000 * mel + 1)`` in float32 (the product with
the integer 10000 is promoted to float32 under the numpy 1.x the package was written for).

Upstream computes the spectrogram of the whole track and cuts it into 187-frame patches, so its
patches start every 187 hops. A musictag window is therefore 187 * 256 = 47872 samples; its
centred STFT gives 188 frames, of which the last (centred on the next window's first sample) is
dropped. Only each window's first frame then differs from upstream (it sees padding instead of
the previous window's last 256 samples), except in the first window where both pad alike.
:meth:`MusicnnTF.log_mel` and :meth:`forward_patches` expose the two halves so the parity test can
run the upstream pipeline exactly.

TensorFlow layouts are kept where they decide numerics: batch normalisation uses TF's epsilon of
1e-3; "same" convolutions with even kernels pad one frame more after than before, as TF does; and
flattening follows TF's channels-last order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .registry import register_architecture
from .spectrogram import MelSpectrogram

#: ``tf.compat.v1.layers.batch_normalization``'s default epsilon.
TF_BATCH_NORM_EPS = 1e-3


@dataclass(frozen=True)
class MusicnnFrontEndConfig:
    """The log-mel input of ``musicnn/configuration.py`` and ``extractor.py``."""

    sample_rate_hz: int = 16000
    n_fft: int = 512
    hop: int = 256
    n_mels: int = 96
    n_frames: int = 187
    #: librosa >= 0.10 pads the centred STFT with zeros ("constant"); 0.7-0.9 reflected.
    pad_mode: str = "constant"

    @property
    def input_samples(self) -> int:
        return self.n_frames * self.hop


class MusicnnLogMel(nn.Module):
    """``(batch, samples)`` -> ``(batch, frames, n_mels)``: the package's log-compressed mel."""

    def __init__(self, config: MusicnnFrontEndConfig):
        super().__init__()
        self.mel = MelSpectrogram(sample_rate_hz=config.sample_rate_hz, n_fft=config.n_fft,
                                  hop=config.hop, n_mels=config.n_mels, power=2.0,
                                  scale="slaney", norm="slaney", padding="center",
                                  pad_mode=config.pad_mode)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mel = self.mel(waveform.float()).half().float()  # upstream stores the mel as float16
        return torch.log10(10000.0 * mel + 1.0).transpose(1, 2)


def tf_batch_norm(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=TF_BATCH_NORM_EPS)


class PatchModel(nn.Module):
    """Shared plumbing: waveform window -> log-mel patch -> the subclass's ``forward_patches``.

    Subclasses set ``config`` and ``log_mel`` and define ``forward_patches`` (logits) and
    ``embed_patches`` (the features upstream exposes last before the output layer).
    """

    config: MusicnnFrontEndConfig
    log_mel: MusicnnLogMel

    def patches(self, waveform: torch.Tensor) -> torch.Tensor:
        """The first ``n_frames`` log-mel frames of each window: ``(batch, frames, n_mels)``."""
        return self.log_mel(waveform)[:, :self.config.n_frames]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.forward_patches(self.patches(waveform))

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.embed_patches(self.patches(waveform))


@dataclass(frozen=True)
class MusicnnTFConfig(MusicnnFrontEndConfig):
    """Defaults are MTT_musicnn and MSD_musicnn (``build_musicnn`` with 64 / 200)."""

    n_classes: int = 50
    timbral_filters: int = 204  # int(1.6 * 128)
    timbral_widths: tuple[int, ...] = (38, 67)  # int(0.4 * 96), int(0.7 * 96) mel bands
    timbral_frames: int = 7
    temporal_filters: int = 51  # int(1.6 * 32)
    temporal_frames: tuple[int, ...] = (128, 64, 32)
    midend_filters: int = 64
    midend_frames: int = 7
    backend_units: int = 200

    @property
    def frontend_channels(self) -> int:
        return (self.timbral_filters * len(self.timbral_widths)
                + self.temporal_filters * len(self.temporal_frames))

    @property
    def midend_channels(self) -> int:
        return self.frontend_channels + 3 * self.midend_filters


class FrequencyPooledConv(nn.Module):
    """Conv over ``(time, mel)``, ReLU, batch norm, then max over the whole frequency axis.

    ``time_padding`` is the ``(before, after)`` zero padding of the time axis: ``timbral_block``
    pads 3 frames each side and convolves "valid"; ``tempo_block`` convolves "same" (TF pads
    ``(k - 1) // 2`` before and the rest after), and its 1-wide kernel needs no frequency padding.
    """

    def __init__(self, filters: int, frames: int, bands: int, time_padding: tuple[int, int]):
        super().__init__()
        self.conv = nn.Conv2d(1, filters, (frames, bands))
        self.norm = nn.BatchNorm2d(filters, eps=TF_BATCH_NORM_EPS)
        self.time_padding = time_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, *self.time_padding))  # x: (batch, 1, time, mel)
        x = self.norm(F.relu(self.conv(x)))
        return x.amax(dim=3)  # (batch, filters, time)


class MidEndLayer(nn.Module):
    """A 1-d convolution over time spanning all input channels (TF's ``[7, channels]`` kernel)."""

    def __init__(self, in_channels: int, filters: int, frames: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, frames, padding=frames // 2)
        self.norm = tf_batch_norm(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.relu(self.conv(x)))


@register_architecture("musicnn_tf", MusicnnTFConfig)
class MusicnnTF(PatchModel):
    """musicnn as the ``musicnn`` pip package defines it; ``embed`` is its "penultimate" layer."""

    def __init__(self, config: MusicnnTFConfig):
        super().__init__()
        if config.timbral_frames % 2 == 0 or config.midend_frames % 2 == 0:
            raise ModelError("timbral_frames and midend_frames must be odd ('same' by padding)")
        self.config = config
        self.log_mel = MusicnnLogMel(config)
        self.input_norm = nn.BatchNorm2d(1, eps=TF_BATCH_NORM_EPS)
        half = config.timbral_frames // 2
        self.timbral = nn.ModuleList(
            FrequencyPooledConv(config.timbral_filters, config.timbral_frames, width, (half, half))
            for width in config.timbral_widths)
        self.temporal = nn.ModuleList(
            FrequencyPooledConv(config.temporal_filters, frames, 1,
                                ((frames - 1) // 2, frames // 2))
            for frames in config.temporal_frames)
        self.midend = nn.ModuleList([
            MidEndLayer(config.frontend_channels, config.midend_filters, config.midend_frames),
            MidEndLayer(config.midend_filters, config.midend_filters, config.midend_frames),
            MidEndLayer(config.midend_filters, config.midend_filters, config.midend_frames)])
        self.pool_norm = tf_batch_norm(2 * config.midend_channels)
        self.dense = nn.Linear(2 * config.midend_channels, config.backend_units)
        self.dense_norm = tf_batch_norm(config.backend_units)
        self.output_layer = nn.Linear(config.backend_units, config.n_classes)

    def _midend_features(self, patches: torch.Tensor) -> torch.Tensor:
        """``(batch, frames, mel)`` -> the densely connected ``(batch, channels, frames)`` map."""
        x = self.input_norm(patches.unsqueeze(1))
        frontend = torch.cat([block(x) for block in (*self.timbral, *self.temporal)], dim=1)
        first = self.midend[0](frontend)
        second = self.midend[1](first) + first
        third = self.midend[2](second) + second
        return torch.cat([frontend, first, second, third], dim=1)

    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        features = self._midend_features(patches)
        # TF concatenates [max, mean] on a trailing axis and flattens: channel-major interleave.
        pooled = torch.stack([features.amax(dim=2), features.mean(dim=2)], dim=2).flatten(1)
        return self.dense_norm(F.relu(self.dense(self.pool_norm(pooled))))

    def forward_patches(self, patches: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.embed_patches(patches))


@dataclass(frozen=True)
class MusicnnVGGConfig(MusicnnFrontEndConfig):
    """``vgg(x, is_training, num_classes, 128)``: MTT_vgg and MSD_vgg."""

    n_classes: int = 50
    filters: int = 128

    @property
    def flat_features(self) -> int:
        time, mel = self.n_frames, self.n_mels
        for pool_time, pool_mel, stride_time, stride_mel in _VGG_POOLS:
            time = (time - pool_time) // stride_time + 1
            mel = (mel - pool_mel) // stride_mel + 1
        return time * mel * self.filters


#: ``(pool time, pool mel, stride time, stride mel)`` of the five "valid" max-pools.
_VGG_POOLS = ((4, 1, 2, 2), (2, 2, 2, 2), (2, 2, 2, 2), (2, 2, 2, 2), (4, 4, 4, 4))


@register_architecture("musicnn_vgg", MusicnnVGGConfig)
class MusicnnVGG(PatchModel):
    """The package's VGG baseline; ``embed`` is the flattened last pooling layer ("pool5")."""

    def __init__(self, config: MusicnnVGGConfig):
        super().__init__()
        self.config = config
        self.log_mel = MusicnnLogMel(config)
        self.input_norm = nn.BatchNorm2d(1, eps=TF_BATCH_NORM_EPS)
        channels = (1, *[config.filters] * len(_VGG_POOLS))
        self.convs = nn.ModuleList(nn.Conv2d(channels[i], channels[i + 1], 3, padding=1)
                                   for i in range(len(_VGG_POOLS)))
        self.norms = nn.ModuleList(nn.BatchNorm2d(config.filters, eps=TF_BATCH_NORM_EPS)
                                   for _ in _VGG_POOLS)
        self.output_layer = nn.Linear(config.flat_features, config.n_classes)

    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(patches.unsqueeze(1))  # (batch, 1, time, mel)
        for conv, norm, (pool_t, pool_m, stride_t, stride_m) in zip(self.convs, self.norms,
                                                                    _VGG_POOLS, strict=True):
            x = F.max_pool2d(norm(F.relu(conv(x))), (pool_t, pool_m), (stride_t, stride_m))
        return x.permute(0, 2, 3, 1).flatten(1)  # TF flattens (time, mel, channels)

    def forward_patches(self, patches: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.embed_patches(patches))
