"""SampleCNN: the m^n-DCNN family of Lee et al. 2017 (Tables 1-3), sample- and frame-level.

One class covers the whole raw-waveform family because the paper builds every member the same way:
a strided first convolution (filter length = stride for Table 2, window/hop for the frame-level rows
of Table 3), then ``n`` modules of conv(m) + BatchNorm + ReLU + max-pool(m) that shrink the time
axis to exactly one frame, a 1x1 convolution acting as a dense layer, dropout and the tag layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_architecture

#: Channels of the nine modules of the paper's 3^9 model (Table 1).
TABLE1_MODULE_CHANNELS = (128, 128, 256, 256, 256, 256, 256, 256, 512)


def default_module_channels(n_modules: int) -> tuple[int, ...]:
    """The 3^9 plan's top ``n`` modules; deeper models add 128-channel modules at the bottom.

    The paper derives shallower (frame-level) models by removing bottom modules of the sample-level
    one (section 3.3), and deeper ones keep the first layers narrow (section 5.3).
    """
    if n_modules <= len(TABLE1_MODULE_CHANNELS):
        return TABLE1_MODULE_CHANNELS[len(TABLE1_MODULE_CHANNELS) - n_modules:]
    extra = n_modules - len(TABLE1_MODULE_CHANNELS)
    return (128,) * extra + TABLE1_MODULE_CHANNELS


@dataclass(frozen=True)
class SampleCNNConfig:
    """An m^n-DCNN. Defaults are the 3^9 model with 59049-sample input (Table 1)."""

    m: int = 3
    n_modules: int = 9
    first_filter: int = 3
    first_stride: int = 3
    first_channels: int = 128
    module_channels: tuple[int, ...] = TABLE1_MODULE_CHANNELS
    dense_channels: int = 512
    n_classes: int = 50
    dropout: float = 0.5

    @classmethod
    def mn(cls, m: int, n_modules: int, first_stride: int, *, first_filter: int | None = None,
           n_classes: int = 50) -> SampleCNNConfig:
        """The Table 2/3 model: ``n_modules`` modules of size ``m`` over a strided first layer."""
        return cls(m=m, n_modules=n_modules, first_filter=first_filter or first_stride,
                   first_stride=first_stride, module_channels=default_module_channels(n_modules),
                   n_classes=n_classes)

    @property
    def input_samples(self) -> int:
        """The input length that the modules reduce to exactly one frame."""
        return self.first_stride * self.m**self.n_modules


def conv_module(in_channels: int, out_channels: int, m: int) -> nn.Sequential:
    """conv(m, 'same' padding) + BatchNorm + ReLU + max-pool(m): the paper's building block."""
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, m, padding="same"),
        nn.BatchNorm1d(out_channels),
        nn.ReLU(),
        nn.MaxPool1d(m),
    )


class TaggingHead(nn.Module):
    """1x1 conv as dense layer + BN + ReLU, dropout, tag layer; exposes its embedding too."""

    def __init__(self, in_channels: int, dense_channels: int, n_classes: int, dropout: float):
        super().__init__()
        self.dense = nn.Sequential(
            nn.Conv1d(in_channels, dense_channels, 1),
            nn.BatchNorm1d(dense_channels),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dense_channels, n_classes)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return self.dense(features).mean(dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.embed(features)))


@register_architecture("samplecnn", SampleCNNConfig)
class SampleCNN(nn.Module):
    """Raw waveform ``(batch, samples)`` -> tag logits ``(batch, n_classes)``."""

    def __init__(self, config: SampleCNNConfig):
        super().__init__()
        if len(config.module_channels) != config.n_modules:
            raise ValueError(f"module_channels has {len(config.module_channels)} entries, "
                             f"n_modules is {config.n_modules}")
        if (config.first_filter - config.first_stride) % 2:
            raise ValueError("first_filter - first_stride must be even to centre the frames")
        self.config = config
        self.frontend = nn.Sequential(
            nn.Conv1d(1, config.first_channels, config.first_filter, stride=config.first_stride,
                      padding=(config.first_filter - config.first_stride) // 2),
            nn.BatchNorm1d(config.first_channels),
            nn.ReLU(),
        )
        channels = (config.first_channels, *config.module_channels)
        self.blocks = nn.Sequential(*(conv_module(channels[i], channels[i + 1], config.m)
                                      for i in range(config.n_modules)))
        self.head = TaggingHead(channels[-1], config.dense_channels, config.n_classes,
                                config.dropout)

        self.channels_last_2d = False

    def use_channels_last_2d(self, enabled: bool = True) -> SampleCNN:
        """Compute as channels-last conv2d with 1 x m kernels over the same parameters.

        oneDNN's bf16 conv1d path does not reach AMX's matrix units and its channels-last conv2d
        path does, so training and bf16 inference use this form (on CPUs without AMX the two
        forms run at about the same rate). Parameters, buffers and state-dict names are those
        of the conv1d form, so cards, checkpoints and the ONNX export (always conv1d) are
        unaffected; in fp32 both forms give the same outputs.
        """
        self.channels_last_2d = enabled
        return self

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.channels_last_2d:
            return self._features_2d(waveform)
        return self.blocks(self.frontend(waveform.unsqueeze(1)))

    def _features_2d(self, waveform: torch.Tensor) -> torch.Tensor:
        """``features`` in the channels-last conv2d form: ``(batch, channels, 1, frames)``."""
        hidden = waveform[:, None, None, :].contiguous(memory_format=torch.channels_last)
        conv, norm, _ = self.frontend
        hidden = F.relu(self._conv_norm_2d(conv, norm, hidden))
        for conv, norm, _, pool in self.blocks:
            hidden = self._conv_norm_2d(conv, norm, hidden)
            if self.training:
                hidden = F.max_pool2d(F.relu(hidden), (1, pool.kernel_size))
            else:  # max-pooling commutes with ReLU: rectify a third of the values, in place
                hidden = F.max_pool2d(hidden, (1, pool.kernel_size)).relu_()
        return hidden

    def _conv_norm_2d(self, conv: nn.Conv1d, norm: nn.BatchNorm1d,
                      hidden: torch.Tensor) -> torch.Tensor:
        """conv then BatchNorm; in eval mode one conv with the BatchNorm folded into it.

        The profile of bf16 inference (benchmarks/throughput.py --profile) showed BatchNorm
        as a tenth of the time, a whole pass over each layer's output to scale and shift it,
        which the folded conv's weights and bias do for free.
        """
        if self.training or not norm.track_running_stats:
            return _batch_norm_2d(norm, _conv_2d(conv, hidden))
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
        padding = conv.padding if isinstance(conv.padding, str) else (0, conv.padding[0])
        return F.conv2d(hidden, (conv.weight * scale[:, None, None]).unsqueeze(2),
                        (bias - norm.running_mean) * scale + norm.bias,
                        stride=(1, conv.stride[0]), padding=padding)

    def _embed_2d(self, features: torch.Tensor) -> torch.Tensor:
        conv, norm, _ = self.head.dense
        return F.relu(self._conv_norm_2d(conv, norm, features)).mean(dim=(2, 3))

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        """The penultimate layer (``dense_channels`` values per window), for similarity search."""
        if self.channels_last_2d:
            return self._embed_2d(self.features(waveform))
        return self.head.embed(self.features(waveform))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.channels_last_2d:
            return self.head.classifier(self.head.dropout(self.embed(waveform)))
        return self.head(self.features(waveform))


def _conv_2d(conv: nn.Conv1d, hidden: torch.Tensor) -> torch.Tensor:
    """``conv`` applied to ``(batch, channels, 1, time)`` as a 1 x k conv2d."""
    padding = conv.padding if isinstance(conv.padding, str) else (0, conv.padding[0])
    return F.conv2d(hidden, conv.weight.unsqueeze(2), conv.bias, stride=(1, conv.stride[0]),
                    padding=padding)


def _batch_norm_2d(norm: nn.BatchNorm1d, hidden: torch.Tensor) -> torch.Tensor:
    """``norm`` on a 4-D input, updating its running statistics exactly as the module does."""
    momentum = norm.momentum
    if norm.training and norm.track_running_stats:
        norm.num_batches_tracked.add_(1)
        if momentum is None:  # a cumulative average, as nn.BatchNorm1d keeps it
            momentum = 1.0 / float(norm.num_batches_tracked)
    return F.batch_norm(hidden, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                        norm.training or not norm.track_running_stats, momentum or 0.0,
                        norm.eps)
