"""Whole libraries: the resumable, sharded, tag-writing options of ``musictag tag``.

``tag`` calls :class:`LibraryRun` at three points (choosing files, opening the output, each file
done or failed); the work itself lives in :mod:`musictag.library`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from ..audio import AudioError
from ..fileio import atomic_open, remove_stale_temporaries
from ..library import DEFAULT_FIELD
from ..library.runlog import FileKey, LogInUseError, RunLog
from ..library.shard import parse_shard, select_shard
from ..output import PATH_ERRORS, is_results_file
from .app import (
    EXIT_SOME_FAILED,
    USER_ERRORS,
    fail,
    fail_error,
    stderr,
)

log = logging.getLogger(__name__)

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


@dataclass
class LibraryRun:
    """The library options of one ``musictag tag`` run, and the work they add per file."""

    output: Path | None
    fmt: str
    log: RunLog | None = None
    shard: tuple[int, int] | None = None
    retry_failed: bool = False
    tag_field: str | None = None  # set when tags go into the files (or would, with dry_run)
    id3v23: bool = False
    dry_run: bool = False
    failed_earlier: int = 0
    quiet: bool = False
    #: Folders already cleared of stale temporaries from tag writes that a killed run left.
    swept: set[Path] = field(default_factory=set)

    @classmethod
    def start(cls, *, output: Path | None, fmt: str, resume: bool, retry_failed: bool,
              shard: str | None, write_tags: bool, tag_field: str | None, id3v23: bool,
              dry_run: bool, quiet: bool) -> LibraryRun:
        """Checks the option combination (one error line and exit 2 when it makes no sense)."""
        logged = output is not None and fmt == "jsonl"
        if (resume or retry_failed) and not logged:
            fail("--resume and --retry-failed need --output FILE in jsonl format")
        if retry_failed and not resume:
            fail("--retry-failed works on an earlier log: add --resume")
        if (tag_field is not None or id3v23) and not (write_tags or dry_run):
            fail("--tag-field and --id3v23 only apply with --write-tags")
        if output is not None:
            check_output(output)
        try:
            parsed = parse_shard(shard) if shard is not None else None
            name = None
            if write_tags or dry_run:  # mutagen is imported only when tags are written
                from ..library.tagwriter import check_field

                name = check_field(tag_field or DEFAULT_FIELD)
            log = RunLog(output, resume=resume) if logged else None
        except USER_ERRORS as error:
            fail_error(error)
        return cls(output, fmt, log, parsed, retry_failed, name, id3v23, dry_run, quiet=quiet)

    def check_model(self, name: Callable[[], str]) -> None:
        """Exit 2 when the log being resumed holds results of a model other than ``name()``.

        Checked before :meth:`select`, so a finished log is refused too rather than reported
        done: mixing two models' scores in one log would go unnoticed. ``name`` is only called
        when the log holds results, so that a fresh run reads no card here.
        """
        if self.log is None or not self.log.models:
            return
        model = name()
        others = self.log.models - {model}
        if others:
            fail(f"{self.output} holds results of {', '.join(sorted(others))}, not {model}; "
                 "resume with that model or write to another file")

    def select(self, files: list[Path], *, unlisted_folders: int = 0) -> list[Path]:
        """This shard's files less those the log has done; exits when none is left to do.

        That exit is 1, not 0, when the log records failures or ``unlisted_folders`` (folders
        that could not be listed, so their files are missing from ``files``) is not 0.
        """
        files = list(dict.fromkeys(files))
        if self.shard:
            files = select_shard(files, *self.shard)
        if self.log is None or not self.log.entries:
            return files
        wanted = None if self.dry_run else self.tag_field
        todo = []
        for path in files:
            try:
                key = FileKey.of(path)
            except OSError:
                todo.append(path)  # tagging it reports why it cannot be read
                continue
            if not self.log.is_done(key, retry_failed=self.retry_failed, written_to=wanted):
                todo.append(path)
            elif self.log.failed_earlier(key):
                self.failed_earlier += 1
        skipped = len(files) - len(todo)
        if (skipped and not self.quiet) or not todo:
            failures = (f", {self.failed_earlier} of them failed (--retry-failed tries them "
                        "again)" if self.failed_earlier else "")
            stderr.print(f"{self.output}: {skipped} of {len(files)} files already done"
                         f"{failures}", markup=False, highlight=False, soft_wrap=True)
        if not todo:
            raise typer.Exit(EXIT_SOME_FAILED if self.failed_earlier or unlisted_folders else 0)
        return todo

    @contextlib.contextmanager
    def open_output(self) -> Iterator[IO[str]]:
        """The --output stream: the durable log for jsonl, an atomically written file otherwise.

        The log is locked while open: a second run on it exits 2 instead of tagging every file
        again.
        """
        assert self.output is not None
        if self.log is None:
            with atomic_open(self.output, "w", encoding="utf-8", errors=PATH_ERRORS) as stream:
                yield stream
            return
        try:
            self.log.open()
        except LogInUseError as error:
            fail_error(error)
        except OSError as error:
            fail(f"{self.output}: cannot write ({error.strerror or error})")
        with self.log:
            yield self.log

    def tagged(self, path: Path, record: dict[str, Any]) -> None:
        """Writes the tags into the file if asked, then stamps the record with the file's key.

        Raises :class:`AudioError` (a :class:`~musictag.library.tagwriter.TagWriteError`) when the
        metadata cannot be written; the record is then not logged as done.
        """
        if self.tag_field is not None:
            if not self.dry_run:
                self._sweep(Path(os.path.realpath(path)).parent)
            from ..library.tagwriter import write_tags

            values = [item["tag"] for item in record["tags"]]
            change = write_tags(path, values, field=self.tag_field, id3v23=self.id3v23,
                                dry_run=self.dry_run)
            if self.dry_run:
                stderr.print(change.describe(), markup=False, highlight=False, soft_wrap=True)
            else:
                record["written_to"] = self.tag_field
        if self.log is not None:
            try:
                record.update(FileKey.of(path).fields())
            except OSError as error:
                raise AudioError(path, f"vanished while being tagged ({error})") from None

    def _sweep(self, folder: Path) -> None:
        """Once per folder: remove the temporaries of tag writes that a killed run left there."""
        if folder in self.swept:
            return
        self.swept.add(folder)
        with contextlib.suppress(OSError):  # an unlistable folder: writing its tags will say why
            for leftover in remove_stale_temporaries(folder):
                log.info("removed %s, left by an interrupted tag write", leftover)

    def failed(self, path: Path, error: AudioError) -> None:
        if self.log is None:
            return
        try:
            key = FileKey.of(path)
        except OSError:  # no key to record: the next run tries it again
            self.log.append({"path": str(path), "error": error.reason})
        else:
            self.log.append_failure(key, error.reason)


def check_output(output: Path) -> None:
    """Exit 2, before any work, when ``output`` names a folder or a file musictag did not write.

    Results replace the file (or, with --resume, are appended to it): an audio file named by a
    slip of the keyboard would be destroyed, and a folder would fail only once all is tagged.
    """
    try:
        if output.is_dir():
            fail(f"{output}: is a folder; --output names a file")
        if output.is_file() and not is_results_file(output):
            fail(f"{output}: exists and is not a musictag log or result file; not overwriting it")
    except OSError as error:
        fail(f"{output}: cannot read ({error.strerror or error})")
