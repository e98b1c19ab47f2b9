"""Converters from upstream checkpoint formats to the project's safetensors state dicts.

A card's ``weights.converter`` names one entry of :data:`CONVERTERS`; each converter takes the
downloaded (or user-supplied) upstream file or folder and the card, and returns the state dict
that the card's architecture loads with every key matched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

Converter = Callable[[Path, "object"], dict[str, np.ndarray]]

CONVERTERS: dict[str, Converter] = {}

from .musicnn import CONVERTER_NAME as _MUSICNN_NAME  # noqa: E402  (the table must exist first)
from .musicnn import convert as _convert_musicnn  # noqa: E402
from .won2020 import CONVERTER_NAME as _WON2020_NAME  # noqa: E402
from .won2020 import convert as _convert_won2020  # noqa: E402

CONVERTERS[_MUSICNN_NAME] = _convert_musicnn
CONVERTERS[_WON2020_NAME] = _convert_won2020
