"""Turning --model/--weights into a loaded tagger, with one-line errors instead of tracebacks."""

from __future__ import annotations

from pathlib import Path

from ..hub import ModelUnavailableError
from ..inference import Tagger, load_tagger, resolve_card
from ..registry import ModelCard
from .app import USER_ERRORS, fail_error


def _fail_loading(error: BaseException):
    flags = "--weights FILE or another --model" if isinstance(error, ModelUnavailableError) else ""
    fail_error(error, flags=flags)


def open_tagger(model: str | None, weights: Path | None, **options) -> Tagger:
    try:
        return load_tagger(model, weights=weights, **options)
    except USER_ERRORS as error:
        _fail_loading(error)


def card_name(model: str | None, weights: Path | None) -> str:
    """The name of the card that ``open_tagger(model, weights)`` tags with (:func:`open_card`)."""
    return open_card(model, weights).name


def open_card(model: str | None, weights: Path | None) -> ModelCard:
    """The card that ``open_tagger(model, weights)`` tags with, found without building the model
    (an exported .onnx file keeps its card inside, so that one is opened)."""
    if model is None and weights is not None and weights.suffix.lower() == ".onnx":
        return open_tagger(None, weights).card
    try:
        return resolve_card(model, weights)
    except USER_ERRORS as error:
        _fail_loading(error)
