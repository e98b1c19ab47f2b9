"""The published taggers of Won et al. 2020 ("Evaluation of CNN-based automatic music tagging
models", SMC 2020).

FCN, CRNN and Musicnn read a log-mel spectrogram (torchaudio's MelSpectrogram + AmplitudeToDB,
reproduced in plain torch), SampleCNN and SampleCNN+SE read the raw 16 kHz waveform. Module and
parameter names follow the upstream code (``layer1.conv``, ``spec_bn``, ``dense``...) so that
their state dicts load key for key; only the mel front-end's fixed buffers are rebuilt here
instead of loaded (:mod:`musictag.convert.won2020` checks them against the checkpoint).

Every model returns logits: the upstream sigmoid is applied by the tagging backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModelError
from .registry import register_architecture
from .spectrogram import MelSpectrogram

#: Architecture names in the registry, by the upstream ``--model_type`` they reproduce.
ARCHITECTURES = {"fcn": "won2020_fcn", "crnn": "won2020_crnn", "musicnn": "won2020_musicnn",
                 "sample": "won2020_samplecnn", "se": "won2020_samplecnn_se"}
#: Channels of layers 2..10 of both sample-level models.
SAMPLE_CHANNELS = (128, 128, 256, 256, 256, 256, 256, 256, 512)


def _pairs(values) -> tuple[tuple[int, int], ...]:
    """JSON gives nested lists; frozen configs need hashable tuples."""
    return tuple(tuple(int(v) for v in pair) for pair in values)


@dataclass(frozen=True)
class LogMelConfig:
    """torchaudio's MelSpectrogram defaults as the upstream models use them (hop = n_fft // 2)."""

    sample_rate_hz: int = 16000
    n_fft: int = 512
    hop: int = 256
    f_min_hz: float = 0.0
    f_max_hz: float = 8000.0
    n_mels: int = 96


class LogMel(nn.Module):
    """Waveform ``(batch, samples)`` -> batch-normalised dB mel ``(batch, 1, n_mels, frames)``.

    Power mel spectrogram (HTK scale, no area normalisation, centred with reflect padding,
    periodic Hann window), then ``10 log10(max(x, 1e-10))`` without a top-dB limit, then the
    trained ``BatchNorm2d(1)`` called ``spec_bn`` upstream.
    """

    def __init__(self, config: LogMelConfig):
        super().__init__()
        self.mel = MelSpectrogram(sample_rate_hz=config.sample_rate_hz, n_fft=config.n_fft,
                                  hop=config.hop, n_mels=config.n_mels, power=2.0,
                                  f_min_hz=config.f_min_hz, f_max_hz=config.f_max_hz,
                                  scale="htk", padding="center", pad_mode="reflect")

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(self.mel(waveform).clamp_min(1e-10)).unsqueeze(1)


class ConvBlock2d(nn.Module):
    """3x3 conv ('same') + BN + ReLU + max-pool: upstream ``Conv_2d``."""

    def __init__(self, in_channels: int, out_channels: int, pool: tuple[int, int]):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.mp = nn.MaxPool2d(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mp(torch.relu(self.bn(self.conv(x))))


class ConvBlock1d(nn.Module):
    """conv (padding ``k // 2``) + BN + ReLU + max-pool: upstream ``Conv_1d``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, stride: int = 1,
                 pool: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride,
                              padding=kernel // 2)
        self.bn = nn.BatchNorm1d(out_channels)
        self.mp = nn.MaxPool1d(pool) if pool > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mp(torch.relu(self.bn(self.conv(x))))


class _SpectrogramModel(nn.Module):
    """The shared log-mel + ``spec_bn`` input of FCN, CRNN and Musicnn."""

    def __init__(self, config: LogMelConfig):
        super().__init__()
        self.spec = LogMel(config)
        self.spec_bn = nn.BatchNorm2d(1)

    def spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.spec_bn(self.spec(waveform))

    def add_conv_stack(self, name: str) -> tuple[int, ...]:
        """Add ``layer1``...``layerN``, one :class:`ConvBlock2d` per ``config.pools`` entry with
        ``config.channels`` outputs (the names Won et al.'s checkpoints use); returns the
        channels, input first."""
        if len(self.config.channels) != len(self.config.pools):
            raise ModelError(f"{name} needs one pool per conv layer")
        channels = (1, *self.config.channels)
        for i, pool in enumerate(self.config.pools):
            self.add_module(f"layer{i + 1}", ConvBlock2d(channels[i], channels[i + 1], pool))
        return channels

    def conv_stack(self, x: torch.Tensor) -> torch.Tensor:
        """The mel image through the blocks :meth:`add_conv_stack` added."""
        for i in range(len(self.config.pools)):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


@dataclass(frozen=True)
class FCNConfig(LogMelConfig):
    """Choi et al.'s fully convolutional network as Won et al. train it on 29.1 s inputs."""

    channels: tuple[int, ...] = (64, 128, 128, 128, 64)
    pools: tuple[tuple[int, int], ...] = ((2, 4), (2, 4), (2, 4), (3, 5), (4, 4))
    n_classes: int = 50

    def __post_init__(self):
        object.__setattr__(self, "pools", _pairs(self.pools))


@register_architecture(ARCHITECTURES["fcn"], FCNConfig)
class FCN(_SpectrogramModel):
    """Waveform ``(batch, 464000)`` -> logits; the pools reduce the mel image to one pixel."""

    def __init__(self, config: FCNConfig):
        super().__init__(config)
        self.config = config
        channels = self.add_conv_stack("FCN")
        self.dropout = nn.Dropout(0.5)
        self.dense = nn.Linear(channels[-1], config.n_classes)

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.conv_stack(self.spectrogram(waveform)).flatten(1)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.dense(self.dropout(self.embed(waveform)))


@dataclass(frozen=True)
class CRNNConfig(LogMelConfig):
    """Choi et al.'s convolutional recurrent network: 2-d conv blocks, then a GRU over time."""

    channels: tuple[int, ...] = (64, 128, 128, 128)
    pools: tuple[tuple[int, int], ...] = ((2, 2), (3, 3), (4, 4), (4, 4))
    gru_units: int = 32
    gru_layers: int = 2
    n_classes: int = 50

    def __post_init__(self):
        object.__setattr__(self, "pools", _pairs(self.pools))


@register_architecture(ARCHITECTURES["crnn"], CRNNConfig)
class CRNN(_SpectrogramModel):
    """Waveform ``(batch, 464000)`` -> logits from the GRU's last time step."""

    def __init__(self, config: CRNNConfig):
        super().__init__(config)
        self.config = config
        channels = self.add_conv_stack("CRNN")
        self.rnn_name = f"layer{len(config.pools) + 1}"
        self.add_module(self.rnn_name, nn.GRU(channels[-1], config.gru_units,
                                              config.gru_layers, batch_first=True))
        self.dropout = nn.Dropout(0.5)
        self.dense = nn.Linear(config.gru_units, config.n_classes)

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.conv_stack(self.spectrogram(waveform))
        if x.shape[2] != 1:
            raise ModelError(f"CRNN pools leave {x.shape[2]} mel rows; they must leave one")
        sequence, _ = getattr(self, self.rnn_name)(x.squeeze(2).transpose(1, 2))
        return sequence[:, -1]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.dense(self.dropout(self.embed(waveform)))


class TimbralFilters(nn.Module):
    """Pons' vertical filters: conv over (frequency, time), then max over the remaining bands."""

    def __init__(self, out_channels: int, shape: tuple[int, int]):
        super().__init__()
        self.conv = nn.Conv2d(1, out_channels, shape, padding=(0, shape[1] // 2))
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))).amax(dim=2)


class TemporalFilters(nn.Module):
    """Pons' horizontal filters: 1-d conv over time of the frequency-averaged spectrogram."""

    def __init__(self, out_channels: int, length: int):
        super().__init__()
        self.conv = nn.Conv1d(1, out_channels, length, padding=length // 2)
        self.bn = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x.mean(dim=2))))


@dataclass(frozen=True)
class MusicnnConfig(LogMelConfig):
    """Pons et al.'s musicnn as Won et al. re-implement it on 3 s inputs.

    Timbral filter heights are ``int(fraction * n_mels)`` as upstream (67 and 38 for 96 mels).
    Their MSD model used 512 back-end channels and 500 dense units; MTAT and Jamendo 64 and 200.
    """

    timbral_channels: int = 204
    timbral_fractions: tuple[float, ...] = (0.7, 0.4)
    timbral_frames: int = 7
    temporal_channels: int = 51
    temporal_lengths: tuple[int, ...] = (129, 65, 33)
    backend_channels: int = 64
    backend_kernel: int = 7
    dense_units: int = 200
    n_classes: int = 50


@register_architecture(ARCHITECTURES["musicnn"], MusicnnConfig)
class Musicnn(_SpectrogramModel):
    """Waveform ``(batch, 48000)`` -> logits."""

    def __init__(self, config: MusicnnConfig):
        super().__init__(config)
        self.config = config
        timbral = [TimbralFilters(config.timbral_channels,
                                  (int(fraction * config.n_mels), config.timbral_frames))
                   for fraction in config.timbral_fractions]
        temporal = [TemporalFilters(config.temporal_channels, length)
                    for length in config.temporal_lengths]
        self.layers = nn.ModuleList([*timbral, *temporal])
        front = (config.timbral_channels * len(timbral)
                 + config.temporal_channels * len(temporal))
        self.layer1 = ConvBlock1d(front, config.backend_channels, config.backend_kernel)
        self.layer2 = ConvBlock1d(config.backend_channels, config.backend_channels,
                                  config.backend_kernel)
        self.layer3 = ConvBlock1d(config.backend_channels, config.backend_channels,
                                  config.backend_kernel)
        self.dense1 = nn.Linear(2 * (front + 3 * config.backend_channels), config.dense_units)
        self.bn = nn.BatchNorm1d(config.dense_units)
        self.dropout = nn.Dropout(0.5)
        self.dense2 = nn.Linear(config.dense_units, config.n_classes)

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.spectrogram(waveform)
        front = torch.cat([layer(x) for layer in self.layers], dim=1)
        res1 = self.layer1(front)
        res2 = self.layer2(res1) + res1
        res3 = self.layer3(res2) + res2
        features = torch.cat([front, res1, res2, res3], dim=1)
        pooled = torch.cat([features.amax(dim=-1), features.mean(dim=-1)], dim=1)
        return torch.relu(self.bn(self.dense1(pooled)))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.dense2(self.dropout(self.embed(waveform)))


@dataclass(frozen=True)
class Won2020SampleCNNConfig:
    """Lee et al.'s 3^9 sample-level CNN as Won et al. train it at 16 kHz on 59049 samples.

    ``layer1`` is a stride-3 conv (padding 1) without pooling, layers 2..10 conv + pool(3), and
    ``layer11`` a 1x1 conv; the head differs per variant (see the model classes).
    """

    channels: tuple[int, ...] = SAMPLE_CHANNELS
    first_channels: int = 128
    n_classes: int = 50

    @property
    def input_samples(self) -> int:
        return 3 ** (len(self.channels) + 1)


class _SampleLevel(nn.Module):
    """Eleven layers built by ``block(in, out, kernel, stride, pool)`` under upstream names."""

    def __init__(self, config: Won2020SampleCNNConfig, block):
        super().__init__()
        self.config = config
        channels = (config.first_channels, *config.channels)
        self.layer1 = block(1, config.first_channels, 3, 3, 1)
        for i in range(len(config.channels)):
            self.add_module(f"layer{i + 2}", block(channels[i], channels[i + 1], 3, 1, 3))
        self.last_layer = f"layer{len(channels) + 1}"
        self.add_module(self.last_layer, block(channels[-1], channels[-1], 1, 1, 1))
        self.n_layers = len(channels) + 1

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform.unsqueeze(1)
        for i in range(self.n_layers):
            x = getattr(self, f"layer{i + 1}")(x)
        if x.shape[-1] != 1:
            raise ModelError(f"input of {waveform.shape[-1]} samples leaves {x.shape[-1]} frames;"
                             f" the model takes {self.config.input_samples}")
        return x.squeeze(-1)


@register_architecture(ARCHITECTURES["sample"], Won2020SampleCNNConfig)
class Won2020SampleCNN(_SampleLevel):
    """Waveform ``(batch, 59049)`` -> logits; ``dense`` reads the 512 channels of ``layer11``."""

    def __init__(self, config: Won2020SampleCNNConfig):
        super().__init__(config, lambda i, o, k, s, p: ConvBlock1d(i, o, k, stride=s, pool=p))
        self.dropout = nn.Dropout(0.5)
        self.dense = nn.Linear(config.channels[-1], config.n_classes)

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.features(waveform)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.dense(self.dropout(self.embed(waveform)))


class ResSEBlock(nn.Module):
    """Two convs with squeeze-excitation (ratio 1) and a residual path: upstream ``ResSE_1d``.

    The shortcut is a conv + BN when stride or width change, the identity otherwise; the sum
    goes through ReLU and the max-pool.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, pool: int):
        super().__init__()
        padding = kernel // 2
        self.conv_1 = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, padding=padding)
        self.bn_1 = nn.BatchNorm1d(out_channels)
        self.conv_2 = nn.Conv1d(out_channels, out_channels, kernel, padding=padding)
        self.bn_2 = nn.BatchNorm1d(out_channels)
        self.dense1 = nn.Linear(out_channels, out_channels)
        self.dense2 = nn.Linear(out_channels, out_channels)
        self.projects = stride != 1 or in_channels != out_channels
        if self.projects:
            self.conv_3 = nn.Conv1d(in_channels, out_channels, kernel, stride=stride,
                                    padding=padding)
            self.bn_3 = nn.BatchNorm1d(out_channels)
        self.mp = nn.MaxPool1d(pool) if pool > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn_2(self.conv_2(torch.relu(self.bn_1(self.conv_1(x)))))
        gate = torch.sigmoid(self.dense2(torch.relu(self.dense1(out.mean(dim=-1)))))
        out = out * gate.unsqueeze(-1)
        shortcut = self.bn_3(self.conv_3(x)) if self.projects else x
        return self.mp(torch.relu(out + shortcut))


@dataclass(frozen=True)
class Won2020SampleCNNSEConfig(Won2020SampleCNNConfig):
    """SampleCNN with residual squeeze-excitation blocks; head ``dense1`` + ``bn`` + ``dense2``."""

    dense_units: int = 512


@register_architecture(ARCHITECTURES["se"], Won2020SampleCNNSEConfig)
class Won2020SampleCNNSE(_SampleLevel):
    """Waveform ``(batch, 59049)`` -> logits."""

    def __init__(self, config: Won2020SampleCNNSEConfig):
        super().__init__(config, ResSEBlock)
        self.dense1 = nn.Linear(config.channels[-1], config.dense_units)
        self.bn = nn.BatchNorm1d(config.dense_units)
        self.dropout = nn.Dropout(0.5)
        self.dense2 = nn.Linear(config.dense_units, config.n_classes)

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.dense1(self.features(waveform))))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.dense2(self.dropout(self.embed(waveform)))
