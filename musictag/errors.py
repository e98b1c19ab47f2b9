"""The errors musictag raises on purpose: one base, :class:`MusictagError`, and one class per kind.

A :class:`MusictagError` is a problem with what the caller asked for (a file, a card, a
setting), and
its ``str()`` is one line fit to show a user; anything else that escapes the library is a bug (or
the machine's: a CUDA error) and keeps its traceback. The CLI catches this base alone.

The model, weights and run kinds are ``ValueError``\\ s too, and export errors ``RuntimeError``\\ s,
because those were the built-in types raised before; callers that catch those keep working.
Messages name parameters (``device 'cuda'``), never CLI flags: the CLI adds those where they matter.
"""

from __future__ import annotations

import os


class MusictagError(Exception):
    """Base of every error musictag raises on purpose; ``str()`` is one line for the user."""


class AudioError(MusictagError):
    """A file that cannot be tagged; ``str()`` is the one line users see."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class ModelError(MusictagError, ValueError):
    """A model card, architecture, backend or device that cannot be used as asked."""


class WeightsError(MusictagError, ValueError):
    """A weights or checkpoint file that is not the one its card names, or cannot be read."""


class ExportError(MusictagError, RuntimeError):
    """An export whose result failed its own checks (or could not be made)."""


class RunError(MusictagError, ValueError):
    """A training, distillation, evaluation or library run whose settings, data or folder
    cannot be used."""


class SettingsError(RunError):
    """Settings that cannot be used together (or one that names the wrong kind of thing), found
    before any work is done.

    The message names parameters; ``rule`` names the rule broken (the raising module lists its
    rules), so that a front end can say the same in terms of its own options, which are what
    its users typed.
    """

    def __init__(self, message: str, *, rule: str):
        super().__init__(message)
        self.rule = rule


def first_line(error: BaseException) -> str:
    """The first line of an error's message: what a one-line report shows.

    A single argument is shown as given (``str(KeyError('x'))`` would add quotes); a message
    of several lines (onnx and torch write those) is cut to its first.
    """
    text = str(error.args[0]) if len(error.args) == 1 else str(error)
    text = text.strip()
    return text.splitlines()[0] if text else repr(error)
