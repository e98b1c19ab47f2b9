"""The PyTorch backend: builds the card's architecture and loads its safetensors weights."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..device import autocast, autocast_dtype, resolve_device
from ..errors import ModelError
from ..nets import build_model, use_bf16_form
from ..registry import ModelCard
from ..weights import read_weights


def load_model(card: ModelCard, weights_path: str | os.PathLike) -> torch.nn.Module:
    """The card's architecture with the file's weights, in eval mode; every key must match."""
    model = build_model(card.arch)
    tensors, _ = read_weights(weights_path)
    state = {name: torch.from_numpy(value) for name, value in tensors.items()}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(f"{weights_path}: weights do not fit architecture "
                         f"{card.arch['name']!r} (missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]})")
    return model.float().eval()


class TorchBackend:
    name = "torch"

    def __init__(self, card: ModelCard, weights_path: str | os.PathLike, *,
                 device: str = "auto", precision: str = "fp32"):
        if precision not in ("fp32", "bf16"):
            raise ModelError(f"unknown precision {precision!r} (fp32 or bf16)")
        self.precision = precision
        self.device = resolve_device(device)
        self.model = load_model(card, weights_path).to(self.device)
        self.autocast_dtype = autocast_dtype(precision, self.device)
        if self.autocast_dtype is not None:
            use_bf16_form(self.model)

    def _run(self, windows: np.ndarray, method) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
        with torch.inference_mode(), autocast(self.device, self.autocast_dtype):
            return method(batch).float().cpu().numpy()

    def predict(self, windows: np.ndarray) -> np.ndarray:
        return self._run(windows, lambda batch: torch.sigmoid(self.model(batch)))

    def embed(self, windows: np.ndarray) -> np.ndarray:
        return self._run(windows, self.model.embed)
