"""Weights on disk: safetensors holding the tensors, with the model card as JSON metadata.

safetensors cannot execute code when read, unlike pickled checkpoints, so a file from anywhere is
safe to open. The card inside the metadata makes a single ``.safetensors`` file self-describing for
``--weights FILE``. numpy only, so the torch-free tagging path can read it too.

Every file :func:`save_weights` writes also stores :func:`tensor_digest` of its tensors beside the
card, and :func:`read_weights` checks it: safetensors itself checks only the header, so a flipped
byte inside a tensor loads without complaint and tags every file wrongly (the shipped model then
said "techno, fast, beat" of everything). A file written before digests existed loads with one
warning per file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from .errors import WeightsError
from .fileio import atomic_path

log = logging.getLogger(__name__)

CARD_METADATA_KEY = "musictag_card"
#: Metadata key of :func:`tensor_digest`, as ``sha256:<hex>``.
DIGEST_METADATA_KEY = "musictag_tensors_sha256"

_warned_undigested: set[str] = set()
_warned_lock = threading.Lock()


class CorruptWeightsError(WeightsError):
    """A weights or exported model file that differs from the digest stored in it; names it."""


def warn_once_without_digest(path: str | os.PathLike, what: str) -> None:
    """Warn, once per file in this process, that ``path`` stores no digest of ``what``.

    Files written before musictag stored digests still load, since refusing them would break
    every older cache and export; the warning says that their corruption would go unnoticed.
    """
    key = str(Path(path).resolve())
    with _warned_lock:
        first = key not in _warned_undigested
        _warned_undigested.add(key)
    if first:
        log.warning("%s: carries no digest of its %s (an older musictag wrote it), so a "
                    "corrupted copy would go unnoticed", path, what)


def tensor_digest(tensors: dict[str, np.ndarray]) -> str:
    """``sha256:<hex>`` over each tensor's name, dtype, shape and little-endian bytes, by name.

    Defined on the tensors rather than the file's bytes so that it can live inside the file it
    describes, and so that the same tensors written again (another safetensors layout, new card)
    keep their digest.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = np.ascontiguousarray(tensors[name])
        value = value.astype(value.dtype.newbyteorder("<"), copy=False)
        digest.update(json.dumps([name, value.dtype.str, list(value.shape)]).encode() + b"\n")
        digest.update(value.tobytes())
    return f"sha256:{digest.hexdigest()}"


def save_weights(path: str | os.PathLike, tensors: dict[str, np.ndarray],
                 card: dict[str, Any]) -> None:
    """Write ``tensors``, ``card`` and the tensors' digest atomically."""
    contiguous = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    metadata = {CARD_METADATA_KEY: json.dumps(card),
                DIGEST_METADATA_KEY: tensor_digest(contiguous)}
    with atomic_path(path) as temporary:
        save_file(contiguous, str(temporary), metadata=metadata)


def read_weights(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """The tensors and, when present, the card stored with them, checked against their digest.

    Raises :class:`CorruptWeightsError` when the tensors do not match the stored digest, and
    ``ValueError`` for a file that is not safetensors.
    """
    try:
        tensors = load_file(str(path))
        with open(path, "rb") as handle:
            header_length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_length))
        metadata = header.get("__metadata__") or {}
        card_json = metadata.get(CARD_METADATA_KEY)
        card = json.loads(card_json) if card_json else None
    except (OSError, SafetensorError, ValueError) as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({error})") from None
    _check_digest(path, tensors, metadata.get(DIGEST_METADATA_KEY), card)
    return tensors, card


def _check_digest(path: str | os.PathLike, tensors: dict[str, np.ndarray], stored: str | None,
                  card: dict[str, Any] | None) -> None:
    if stored is None:
        warn_once_without_digest(path, "tensors")
        return
    if tensor_digest(tensors) != stored:
        card = card or {}
        converted = card.get("name") and (card.get("weights") or {}).get("converter")
        remedy = (f" (`musictag models pull {card['name']} --force` fetches and converts it "
                  f"again)" if converted else "")
        raise CorruptWeightsError(f"{path}: corrupted: its tensors do not match the digest "
                                  f"stored with them; replace the file{remedy}")
