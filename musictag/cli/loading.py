"""Turning arguments into inputs: --model/--weights into a loaded tagger (one-line errors instead
of tracebacks), path arguments into audio files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..audio import find_audio_files
from ..hub import ModelUnavailableError
from ..inference import Tagger, load_tagger, resolve_card
from ..registry import ModelCard
from .app import USER_ERRORS, fail, fail_error, stderr


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


def collect_paths(arguments: list[str]) -> tuple[list[Path], int]:
    """Arguments with ``-`` replaced by the paths read from stdin, folders expanded; and how many
    folders could not be listed, each named on stderr (the run then exits 1, not 0).

    A stdin line loses only its line ending, since a file name may begin or end with spaces, and
    is decoded as the file system's names are (``os.fsdecode``), so a name that is not UTF-8
    still names its file.
    """
    expanded: list[str] = []
    for argument in arguments:
        if argument == "-":
            if sys.stdin is None:
                fail("stdin is closed; nothing to read paths from")
            lines = (line.removesuffix(b"\n").removesuffix(b"\r") for line in sys.stdin.buffer)
            expanded.extend(os.fsdecode(line) for line in lines if line)
        else:
            expanded.append(argument)
    unlisted: list[OSError] = []

    def report(error: OSError) -> None:
        unlisted.append(error)
        stderr.print(f"musictag: {error.filename}: cannot list this folder "
                     f"({error.strerror or error})", markup=False, highlight=False,
                     soft_wrap=True)

    return list(find_audio_files(expanded, on_error=report)), len(unlisted)
