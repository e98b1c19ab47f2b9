"""Turning --model/--weights into a loaded tagger, with one-line errors instead of tracebacks."""

from __future__ import annotations

from pathlib import Path

from ..hub import ModelUnavailableError
from ..inference import Tagger, load_tagger
from ..registry import UnknownModelError
from .app import fail


def open_tagger(model: str | None, weights: Path | None, **options) -> Tagger:
    try:
        return load_tagger(model, weights=weights, **options)
    except (UnknownModelError, ModelUnavailableError, ValueError, OSError) as error:
        fail(str(error.args[0]) if error.args else str(error))
