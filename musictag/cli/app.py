"""The Typer application, shared option types and the console plumbing every command uses.

Results go to stdout; progress, warnings and errors go to stderr, so ``musictag tag DIR | jq``
sees only results. Exit codes: 0 all done, 1 some inputs failed, 2 usage or model errors.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import MusictagError, first_line

app = typer.Typer(
    name="musictag",
    help="Tag music from its raw waveform with sample-level deep CNNs (SampleCNN).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stderr = Console(stderr=True)

EXIT_SOME_FAILED = 1
EXIT_USAGE = 2

ModelOption = Annotated[str | None, typer.Option(
    "--model", "-m", help="Model card name (see `musictag models`) or path to a card .json.")]
WeightsOption = Annotated[Path | None, typer.Option(
    "--weights", help="A .safetensors weights file, or for tag an exported .onnx file (its "
                      "stored card is used unless --model).")]
DeviceOption = Annotated[str, typer.Option(
    "--device", help="auto, cpu or cuda (auto picks a CUDA GPU when present).")]
#: embed and evaluate default to the exact path: an index or a score then compares across
#: machines; bf16 is the torch form tag's ``--precision auto`` picks on AMX CPUs.
ExactPrecisionOption = Annotated[str, typer.Option(
    "--precision", help="fp32 (exact, the default) or bf16 (torch's bf16 form, faster on "
                        "CPUs with AMX; `musictag verify-paths` measures it against fp32).")]
BatchSizeOption = Annotated[int, typer.Option(
    "--batch-size", "-b", min=1, help="Windows per inference batch.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log more on stderr.")]


class _OneLineFormatter(logging.Formatter):
    """``musictag: warning: ...`` on one line, like the error lines, so grep and logs see it whole.

    (A RichHandler wrapped long messages at 80 columns when stderr is not a terminal.)
    """

    def format(self, record: logging.LogRecord) -> str:
        return f"musictag: {record.levelname.lower()}: {record.getMessage()}"


_verbose = False


def setup_logging(verbose: bool = False) -> None:
    """Warnings (info too under ``verbose``) on stderr, one line each; ``verbose`` also makes
    :func:`fail_error` show the traceback."""
    global _verbose
    _verbose = verbose
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler],
                        force=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One line on stderr, then exit: how every whole-job failure ends."""
    stderr.print(f"musictag: error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def check_exact_or_bf16(precision: str) -> None:
    """The two precisions of ``ExactPrecisionOption``; tag's auto and int8 need its own rules."""
    if precision not in ("fp32", "bf16"):
        fail(f"--precision must be fp32 or bf16, not {precision!r}")


def fail_error(error: BaseException, code: int = EXIT_USAGE, *, flags: str = "") -> NoReturn:
    """:func:`fail` with the first line of ``error`` (after it, ``flags``: the options that
    mend it, which the library's message cannot name); the traceback too under ``--verbose``."""
    if _verbose:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    fail(f"{first_line(error)}{f' ({flags})' if flags else ''}", code)


#: What a command catches around library calls: the library's own errors and the file system's.
USER_ERRORS = (MusictagError, OSError)


def show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def progress_bar(quiet: bool, *, transient: bool = True, info: bool = False) -> Progress:
    """The bar every long command draws on stderr: description, bar, done/total, time left.

    Hidden under ``--quiet`` or when stderr is not a terminal; ``info`` adds a column for each
    task's ``info`` field (train's loss); ``transient`` bars vanish when done.
    """
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    return Progress(*columns, TimeRemainingColumn(), console=stderr,
                    disable=not show_progress(quiet), transient=transient)
