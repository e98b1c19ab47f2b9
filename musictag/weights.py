"""Weights on disk: safetensors holding the tensors, with the model card as JSON metadata.

safetensors cannot execute code when read, unlike pickled checkpoints, so a file from anywhere is
safe to open. The card inside the metadata makes a single ``.safetensors`` file self-describing for
``--weights FILE``. numpy only, so the torch-free tagging path can read it too.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from .fileio import atomic_path

CARD_METADATA_KEY = "musictag_card"


def save_weights(path: str | os.PathLike, tensors: dict[str, np.ndarray],
                 card: dict[str, Any]) -> None:
    """Write ``tensors`` and ``card`` atomically."""
    contiguous = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    with atomic_path(path) as temporary:
        save_file(contiguous, str(temporary), metadata={CARD_METADATA_KEY: json.dumps(card)})


def read_weights(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """The tensors and, when present, the card stored with them."""
    try:
        tensors = load_file(str(path))
        with open(path, "rb") as handle:
            header_length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_length))
    except (OSError, SafetensorError, ValueError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({error})") from None
    card_json = header.get("__metadata__", {}).get(CARD_METADATA_KEY)
    return tensors, json.loads(card_json) if card_json else None
