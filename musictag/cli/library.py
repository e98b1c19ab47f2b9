"""Whole libraries: the resumable, sharded, tag-writing options of ``musictag tag``.

The run itself is :class:`musictag.library.run.LibraryRun`; here its settings come from flags,
its errors are said in terms of those flags, and what it selects is reported on stderr.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ..errors import SettingsError
from ..library import DEFAULT_FIELD
from ..library.run import LibraryRun, Rule, Selection
from .app import EXIT_SOME_FAILED, USER_ERRORS, fail, fail_error, stderr

ResumeOption = Annotated[bool, typer.Option(
    "--resume", help="Keep the --output JSONL log and skip the files it records (same path, "
                     "size and modification time).")]
RetryFailedOption = Annotated[bool, typer.Option(
    "--retry-failed", help="With --resume, try the files recorded as failed again.")]
ShardOption = Annotated[str | None, typer.Option(
    "--shard", help="K/N: tag only the K-th of N equal shares of the sorted file list "
                    "(1 <= K <= N), for cluster array jobs.")]
WriteTagsOption = Annotated[bool, typer.Option(
    "--write-tags", help="Store the selected tags in each file's own metadata (atomically; "
                         "the audio and all other tags are kept).")]
TagFieldOption = Annotated[str | None, typer.Option(
    "--tag-field", help=f"Metadata field for --write-tags (default {DEFAULT_FIELD}; GENRE and "
                        "MOOD map to each format's genre/mood field).")]
Id3v23Option = Annotated[bool, typer.Option(
    "--id3v23", help="Save MP3/WAV/AIFF tags as ID3v2.3 instead of v2.4.")]
DryRunOption = Annotated[bool, typer.Option(
    "--dry-run", help="Print on stderr what --write-tags would change, and change nothing.")]


#: Each :class:`Rule` as ``tag`` and ``merge-shards`` say it: in their flags, which are what
#: their users typed (the library's messages name its parameters).
RULE_MESSAGES = {
    Rule.LOG_NEEDED: "--resume and --retry-failed need --output FILE in jsonl format",
    Rule.RESUME_NEEDED: "--retry-failed works on an earlier log: add --resume",
    Rule.TAGS_NOT_WRITTEN: "--tag-field and --id3v23 only apply with --write-tags",
    Rule.OUTPUT_IS_FOLDER: "{output}: is a folder; --output names a file",
}


def fail_run(error: BaseException, *, output: Path | None) -> NoReturn:
    """Exit 2 with one line for an error of a library run, a broken rule worded in flags."""
    if isinstance(error, SettingsError):
        fail(RULE_MESSAGES[Rule(error.rule)].format(output=output))
    fail_error(error)


def start_run(*, output: Path | None, fmt: str, files: list[Path], unlisted_folders: int,
              quiet: bool, name: Callable[[], str],
              **settings: Any) -> tuple[LibraryRun, Selection]:
    """Start the run of ``tag``'s library flags (``settings``: the rest of
    :meth:`LibraryRun.start`'s parameters) and choose the files it tags.

    Exits 2 on a mistake in the flags, or on a log of a model other than ``name()``; exits when
    the log has done every file: with 1, not 0, when it records failures or
    ``unlisted_folders`` (folders that could not be listed, so their files are missing from
    ``files``) is not 0.
    """
    try:
        run = LibraryRun.start(output=output, fmt=fmt, **settings)
        run.check_model(name)
        selection = run.select(files)
    except USER_ERRORS as error:
        fail_run(error, output=output)
    if not selection.resumed:
        return run, selection
    if (selection.skipped and not quiet) or not selection.todo:
        failures = (f", {selection.failed_earlier} of them failed (--retry-failed tries them "
                    "again)" if selection.failed_earlier else "")
        stderr.print(f"{output}: {selection.skipped} of {selection.total} files already done"
                     f"{failures}", markup=False, highlight=False, soft_wrap=True)
    if not selection.todo:
        raise typer.Exit(EXIT_SOME_FAILED if selection.failed_earlier or unlisted_folders else 0)
    return run, selection
