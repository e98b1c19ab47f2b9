"""Where a card's weights are on this machine: shipped with the package, or in the user cache.

The cache folder follows the platform's convention (XDG on Linux, through platformdirs) and moves
with ``MUSICTAG_CACHE``. Downloading into it is ``musictag models pull``; this module only answers
"where is it" and says in one line how to get what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from .registry import ModelCard

CACHE_ENV = "MUSICTAG_CACHE"


class ModelUnavailableError(RuntimeError):
    """The card is known but its weights are not on this machine; the message says what to do."""


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path(platformdirs.user_cache_dir("musictag"))


def converted_path(card: ModelCard) -> Path:
    """Where the project-format weights of a downloaded or imported card are kept."""
    return cache_dir() / "models" / f"{card.name}.safetensors"


def local_weights(card: ModelCard) -> Path:
    """The weights file for ``card``, or :class:`ModelUnavailableError` saying how to get it."""
    shipped = card.weights.get("file")
    if shipped:
        path = (card.home or Path.cwd()) / shipped
        if path.is_file():
            return path
        raise ModelUnavailableError(
            f"model {card.name!r}: its weights ({shipped}) are not in this install; "
            f"pass a weights file with --weights FILE or choose another with --model")
    cached = converted_path(card)
    if cached.is_file():
        return cached
    raise ModelUnavailableError(
        f"model {card.name!r} is not downloaded; run `musictag models pull {card.name}` "
        f"(needs internet) or `musictag models import FILE` with a local copy")


def is_available_offline(card: ModelCard) -> bool:
    try:
        local_weights(card)
    except ModelUnavailableError:
        return False
    return True
