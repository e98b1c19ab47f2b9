"""Command-line interface; importing it registers every command on :data:`app`."""

from . import distill, export, library, library_commands, models, tag, train, viz  # noqa: F401  (each module registers its commands)
from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
