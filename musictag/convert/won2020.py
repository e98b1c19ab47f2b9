"""Won et al. 2020 checkpoints (``best_model.pth`` state dicts) -> :mod:`musictag.nets.won2020`.

The project's modules carry the upstream parameter names, so conversion is a strict check rather
than a rename: every key of the model must be in the checkpoint with its shape, and every key of
the checkpoint must be used. The two exceptions are torchaudio's fixed front-end buffers
(``spec.spectrogram.window``, ``spec.mel_scale.fb``), which the project computes from the card's
configuration; they are compared with that computation instead of loaded, so a card whose mel
settings differ from the checkpoint's is caught here rather than producing quietly wrong tags.

The checkpoint is read with ``torch.load(weights_only=True)``, which refuses arbitrary pickled
objects, and mapped to the CPU because the upstream files were saved from CUDA tensors.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import WeightsError, first_line
from ..nets import build_model
from ..nets.spectrogram import hann_window
from ..nets.won2020 import LogMel
from ..registry import ModelCard

#: The converter's name in :data:`musictag.convert.CONVERTERS` and in the cards.
CONVERTER_NAME = "won2020"
#: Largest difference allowed between a checkpoint's front-end buffers and the project's own.
BUFFER_TOLERANCE = 1e-4
_WINDOW_KEY = "spec.spectrogram.window"
_FILTERBANK_KEY = "spec.mel_scale.fb"


class CheckpointMismatchError(WeightsError):
    """The checkpoint does not fit the card's architecture; the message names the keys."""


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The upstream state dict, loaded without running pickled code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as error:
        raise CheckpointMismatchError(f"{path}: not a readable PyTorch checkpoint "
                                      f"({first_line(error)})") \
            from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatchError(f"{path}: not a plain state dict of tensors")
    return state


def _check_front_end(state: dict[str, torch.Tensor], model: torch.nn.Module,
                     source: Path) -> None:
    """Compare the checkpoint's fixed mel buffers with the project's (see module docstring)."""
    mel = model.spec.mel
    ours = {_WINDOW_KEY: hann_window(mel.stft.n_fft), _FILTERBANK_KEY: mel.filters.numpy().T}
    for key, expected in ours.items():
        theirs = state[key].numpy()
        if theirs.shape != expected.shape:
            raise CheckpointMismatchError(f"{source}: {key} has shape {theirs.shape}, the card's "
                                          f"front-end gives {expected.shape}")
        difference = float(np.abs(theirs - expected).max())
        if difference > BUFFER_TOLERANCE:
            raise CheckpointMismatchError(f"{source}: {key} differs from the card's front-end "
                                          f"by {difference:.2g}; the mel settings do not match")


def state_dict_for(state: dict[str, torch.Tensor], arch: dict,
                   source: Path | str = "<state dict>") -> dict[str, np.ndarray]:
    """The project state dict of ``arch`` from an upstream one; every key matched both ways."""
    model = build_model(arch)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    front_end = (_WINDOW_KEY, _FILTERBANK_KEY) if isinstance(getattr(model, "spec", None),
                                                             LogMel) else ()
    missing = sorted(set(expected) - set(state)) + [k for k in front_end if k not in state]
    left_over = sorted(set(state) - set(expected) - set(front_end))
    if missing or left_over:
        raise CheckpointMismatchError(
            f"{source}: does not fit {arch['name']}: "
            f"{len(missing)} key(s) missing ({', '.join(missing[:4]) or '-'}), "
            f"{len(left_over)} left over ({', '.join(left_over[:4]) or '-'})")
    wrong = [f"{key} {tuple(state[key].shape)} != {shape}" for key, shape in expected.items()
             if tuple(state[key].shape) != shape]
    if wrong:
        raise CheckpointMismatchError(f"{source}: shapes do not fit {arch['name']}: "
                                      f"{'; '.join(wrong[:3])}")
    if front_end:
        _check_front_end(state, model, Path(source))
    return {key: state[key].detach().cpu().numpy() for key in expected}


def convert(source: Path, card: ModelCard) -> dict[str, np.ndarray]:
    """A card's state dict from an upstream ``best_model.pth``."""
    return state_dict_for(read_checkpoint(Path(source)), card.arch, source)
