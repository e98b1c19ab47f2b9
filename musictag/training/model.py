"""The network a run trains: its card (architecture, rate, window, labels), start and statistics.

The architecture comes from the configuration merged over the paper's 3^9 SampleCNN, or over the
card of ``--init`` when fine-tuning, whose weights then start the run: every tensor is carried over
except the tag layer's rows for tags the card did not have, which start fresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..data.cache import AudioCache
from ..errors import RunError, WeightsError
from ..hub import local_weights
from ..nets import build_model, config_from_dict, config_to_dict
from ..nets.samplecnn import SampleCNNConfig
from ..registry import ModelCard, get_card
from ..weights import read_weights
from .config import TrainConfig

log = logging.getLogger(__name__)

DEFAULT_RATE_HZ = 22050
#: Parameters of the tag layer, which every architecture builds with ``TaggingHead``.
CLASSIFIER_PREFIX = "head.classifier."
#: Training segments averaged to set a mel model's input mean and standard deviation.
STATISTICS_SEGMENTS = 256


@dataclass(frozen=True)
class ModelSpec:
    arch: dict
    sample_rate_hz: int
    window_samples: int
    averaging: dict
    init: ModelCard | None


def resolve_spec(config: TrainConfig, n_tags: int) -> ModelSpec:
    init = get_card(config.init) if config.init else None
    base = dict(init.arch) if init else config_to_dict(SampleCNNConfig())
    if config.arch.get("name", base["name"]) != base["name"]:
        base = {"name": config.arch["name"]}
    arch = config_to_dict(config_from_dict({**base, **config.arch, "n_classes": n_tags}))
    rate = config.sample_rate_hz or (init.sample_rate_hz if init else DEFAULT_RATE_HZ)
    if arch.get("sample_rate_hz", rate) != rate:
        raise RunError(f"arch.sample_rate_hz is {arch['sample_rate_hz']} but the run's "
                       f"sample_rate_hz is {rate}")
    window = config.window_samples or (init.window_samples if init else
                                       config_from_dict(arch).input_samples)
    averaging = config.averaging or (init.averaging if init else {"rule": "consecutive"})
    return ModelSpec(arch=arch, sample_rate_hz=rate, window_samples=window, averaging=averaging,
                     init=init)


def load_init_weights(model: torch.nn.Module, card: ModelCard, labels: list[str]) -> None:
    """Copy ``card``'s weights into ``model``; tag-layer rows are matched by label name."""
    tensors, _ = read_weights(local_weights(card))
    state = model.state_dict()
    carried = [labels.index(label) for label in card.labels if label in labels]
    sources = [card.labels.index(labels[row]) for row in carried]
    for name, target in state.items():
        if name not in tensors:
            raise WeightsError(f"init card {card.name!r}: its weights have no {name!r}")
        value = torch.from_numpy(tensors[name])
        if value.dim() == 1 and target.dim() == 0 and value.numel() == 1:
            value = value.reshape(())  # safetensors files hold scalars as 1-element arrays
        if name.startswith(CLASSIFIER_PREFIX):
            target[carried] = value[sources].to(target.dtype)
        elif value.shape != target.shape:
            raise WeightsError(f"init card {card.name!r}: {name} has shape "
                               f"{tuple(value.shape)}, the model being trained "
                               f"{tuple(target.shape)}")
        else:
            target.copy_(value)
    log.info("fine-tuning from %s: %d of %d tags carried over", card.name, len(carried),
             len(labels))


@torch.no_grad()
def set_input_statistics(model: torch.nn.Module, cache: AudioCache, paths: list[str],
                         lengths: np.ndarray, *, window_samples: int, seed: int) -> None:
    """The mel model standardises its input by the training data's mean and deviation (4.2)."""
    rng = np.random.default_rng([seed, 1])
    picks = rng.choice(len(paths), size=min(STATISTICS_SEGMENTS, len(paths)), replace=False)
    total = total_sq = count = 0.0
    for start in range(0, len(picks), 32):
        segments = np.stack([
            cache.segment(paths[i], int(rng.integers(0, max(lengths[i] - window_samples, 0) + 1)),
                          window_samples) for i in picks[start:start + 32]])
        features = model.log_mel(torch.from_numpy(segments)).double()
        total += float(features.sum())
        total_sq += float((features * features).sum())
        count += features.numel()
    mean = total / count
    model.input_mean.fill_(mean)
    model.input_std.fill_(max((total_sq / count - mean * mean) ** 0.5, 1e-6))


def build(spec: ModelSpec, labels: list[str]) -> torch.nn.Module:
    model = build_model(spec.arch)
    if spec.init is not None:
        load_init_weights(model, spec.init, labels)
    return model


def trained_card(spec: ModelSpec, *, name: str, labels: list[str], training_data: str,
                 reported: dict, provenance: dict) -> ModelCard:
    arch = spec.arch["name"]
    return ModelCard.from_dict({
        "name": name,
        "description": f"{arch} trained with musictag train on {training_data}"
                       + (f", fine-tuned from {spec.init.name}" if spec.init else ""),
        "arch": spec.arch,
        "labels": labels,
        "sample_rate_hz": spec.sample_rate_hz,
        "window_samples": spec.window_samples,
        "averaging": spec.averaging,
        "weights": {"file": f"{name}.safetensors"},
        "training_data": training_data,
        "source": "musictag train",
        "reported": reported,
        "provenance": provenance,
    })
