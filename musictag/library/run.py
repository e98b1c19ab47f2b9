"""One tagging run over a whole library: its results log, resume, shard and tags written into files.

A caller (``musictag tag``, or Python) starts a :class:`LibraryRun` from its settings, which are
checked together before any work; :meth:`LibraryRun.select` then says which files are left to do,
:meth:`LibraryRun.open_output` opens where the results go, and :meth:`LibraryRun.tagged` or
:meth:`LibraryRun.failed` is told of each file as it finishes. Tagging itself is the caller's
(locally or on the ray engine), so this module needs no model and imports no torch. It never
prints: what it found is returned (:class:`Selection`, :class:`~.tagwriter.TagChange`), what cannot
be done is raised as a :class:`~musictag.errors.MusictagError`, and housekeeping is logged.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..audio import AudioError
from ..errors import RunError, SettingsError
from ..fileio import atomic_open, remove_stale_temporaries
from ..output import PATH_ERRORS, is_results_file
from . import DEFAULT_FIELD
from .runlog import FileKey, RunLog
from .shard import parse_shard, select_shard

if TYPE_CHECKING:  # mutagen (.tagwriter) is imported only by runs that write tags
    from .tagwriter import TagChange

log = logging.getLogger(__name__)


class Rule(str, enum.Enum):
    """The rules a run's settings can break, as :attr:`SettingsError.rule
    <musictag.errors.SettingsError.rule>`: a front end words each in its own options."""

    LOG_NEEDED = "log_needed"  # resume or retry_failed without a jsonl output to resume
    RESUME_NEEDED = "resume_needed"  # retry_failed without resume
    TAGS_NOT_WRITTEN = "tags_not_written"  # tag_field or id3v23 without write_tags or dry_run
    OUTPUT_IS_FOLDER = "output_is_folder"


@dataclass(frozen=True)
class Selection:
    """The files a run has left to do, and what its log says of the rest of its shard."""

    todo: list[Path]
    #: Files in this run's shard (all files without one), duplicates removed.
    total: int
    #: Whether an earlier run's records chose ``todo`` (False: a fresh log, or none).
    resumed: bool = False
    #: Files skipped because the log records them as failed; a run that skips any has not
    #: tagged every file, so it should not report success.
    failed_earlier: int = 0

    @property
    def skipped(self) -> int:
        return self.total - len(self.todo)


@dataclass
class LibraryRun:
    """The settings of one run over a library, and the work they add to each file.

    Build it with :meth:`start`, which checks the settings; the fields are what it resolved.
    """

    output: Path | None
    fmt: str
    log: RunLog | None = None
    shard: tuple[int, int] | None = None
    retry_failed: bool = False
    tag_field: str | None = None  # set when tags go into the files (or would, with dry_run)
    id3v23: bool = False
    dry_run: bool = False
    #: Folders already cleared of stale temporaries from tag writes that a killed run left.
    swept: set[Path] = field(default_factory=set)

    @classmethod
    def start(cls, *, output: Path | None, fmt: str, resume: bool = False,
              retry_failed: bool = False, shard: str | None = None, write_tags: bool = False,
              tag_field: str | None = None, id3v23: bool = False,
              dry_run: bool = False) -> LibraryRun:
        """Check the settings together and read the log being resumed; nothing is written yet.

        ``shard`` is ``"K/N"``; ``dry_run`` computes the tag changes ``write_tags`` would make
        (for the caller to show) and writes none. Raises :class:`SettingsError` for settings
        that make no sense together (its ``rule`` is a :class:`Rule`), :class:`RunError` for a
        bad shard, tag field or ``output`` (see :func:`check_output`), and ``OSError`` when the
        log to resume cannot be read. All of it is found before any file is tagged, so a
        mistake costs no work.
        """
        logged = output is not None and fmt == "jsonl"
        if (resume or retry_failed) and not logged:
            raise SettingsError("resume and retry_failed need an output file in jsonl format "
                                "(the log they continue)", rule=Rule.LOG_NEEDED)
        if retry_failed and not resume:
            raise SettingsError("retry_failed works on an earlier log: set resume too",
                                rule=Rule.RESUME_NEEDED)
        if (tag_field is not None or id3v23) and not (write_tags or dry_run):
            raise SettingsError("tag_field and id3v23 only apply with write_tags (or dry_run)",
                                rule=Rule.TAGS_NOT_WRITTEN)
        if output is not None:
            check_output(output)
        parsed = parse_shard(shard) if shard is not None else None
        name = None
        if write_tags or dry_run:
            from .tagwriter import check_field

            name = check_field(tag_field or DEFAULT_FIELD)
        run_log = RunLog(output, resume=resume) if logged else None
        return cls(output, fmt, run_log, parsed, retry_failed, name, id3v23, dry_run)

    def check_model(self, name: Callable[[], str]) -> None:
        """Raise :class:`RunError` when the log being resumed holds results of a model other
        than ``name()``.

        Call it before :meth:`select`, so that a finished log is refused too rather than found
        done: mixing two models' scores in one log would go unnoticed. ``name`` is only called
        when the log holds results, so that a fresh run reads no card here.
        """
        if self.log is None or not self.log.models:
            return
        model = name()
        others = self.log.models - {model}
        if others:
            raise RunError(f"{self.output} holds results of {', '.join(sorted(others))}, not "
                           f"{model}; resume with that model or write to another file")

    def select(self, files: list[Path]) -> Selection:
        """This shard's files, less those the log has done (all of them without a log).

        A file is done when the log has a record of this version of it (path, size and
        modification time) that succeeded, wrote its tags into the field asked for, if any, or
        failed (unless ``retry_failed``). A file that cannot be stat'ed is left to do: tagging
        it reports why it cannot be read.
        """
        files = list(dict.fromkeys(files))
        if self.shard:
            files = select_shard(files, *self.shard)
        if self.log is None or not self.log.entries:
            return Selection(files, len(files))
        wanted = None if self.dry_run else self.tag_field
        todo = []
        failed_earlier = 0
        for path in files:
            try:
                key = FileKey.of(path)
            except OSError:
                todo.append(path)
                continue
            if not self.log.is_done(key, retry_failed=self.retry_failed, written_to=wanted):
                todo.append(path)
            elif self.log.failed_earlier(key):
                failed_earlier += 1
        return Selection(todo, len(files), resumed=True, failed_earlier=failed_earlier)

    @contextlib.contextmanager
    def open_output(self) -> Iterator[IO[str]]:
        """The output stream: the durable log for jsonl, an atomically written file otherwise.

        The log is locked while open: a second run on it raises
        :class:`~.runlog.LogInUseError` instead of tagging every file again; a log that cannot
        be opened raises :class:`RunError`.
        """
        if self.output is None:
            raise ValueError("this run has no output file; write its results elsewhere")
        if self.log is None:
            with atomic_open(self.output, "w", encoding="utf-8", errors=PATH_ERRORS) as stream:
                yield stream
            return
        try:
            self.log.open()
        except OSError as error:
            raise RunError(f"{self.output}: cannot write ({error.strerror or error})") from None
        with self.log:
            yield self.log

    def tagged(self, path: Path, record: dict[str, Any]) -> TagChange | None:
        """Write the record's tags into the file if asked, then stamp it with the file's key.

        Returns the change to the file's tags (with ``dry_run``, the change it would be), or
        None when tags are not written. Raises :class:`AudioError` (a
        :class:`~.tagwriter.TagWriteError`) when the metadata cannot be written, or the file
        vanished; the record is then not to be logged as done.
        """
        change = None
        if self.tag_field is not None:
            if not self.dry_run:
                self._sweep(Path(os.path.realpath(path)).parent)
            from .tagwriter import write_tags

            values = [item["tag"] for item in record["tags"]]
            change = write_tags(path, values, field=self.tag_field, id3v23=self.id3v23,
                                dry_run=self.dry_run)
            if not self.dry_run:
                record["written_to"] = self.tag_field
        if self.log is not None:
            try:
                record.update(FileKey.of(path).fields())
            except OSError as error:
                raise AudioError(path, f"vanished while being tagged ({error})") from None
        return change

    def _sweep(self, folder: Path) -> None:
        """Once per folder: remove the temporaries of tag writes that a killed run left there."""
        if folder in self.swept:
            return
        self.swept.add(folder)
        with contextlib.suppress(OSError):  # an unlistable folder: writing its tags will say why
            for leftover in remove_stale_temporaries(folder):
                log.info("removed %s, left by an interrupted tag write", leftover)

    def failed(self, path: Path, error: AudioError) -> None:
        """Log the failure, so that a resumed run skips the file until ``retry_failed``."""
        if self.log is None:
            return
        try:
            key = FileKey.of(path)
        except OSError:  # no key to record: the next run tries it again
            self.log.append({"path": str(path), "error": error.reason})
        else:
            self.log.append_failure(key, error.reason)


def check_output(output: Path) -> None:
    """Raise, before any work, when ``output`` names a folder or a file musictag did not write.

    Results replace the file (or, resumed, are appended to it): an audio file named by a slip of
    the keyboard would be destroyed, and a folder would fail only once all is tagged. A folder
    is a :class:`SettingsError` (:attr:`Rule.OUTPUT_IS_FOLDER`); a file that is not musictag's,
    or cannot be read, a :class:`RunError`.
    """
    try:
        if output.is_dir():
            raise SettingsError(f"{output}: is a folder; output names a file",
                                rule=Rule.OUTPUT_IS_FOLDER)
        if output.is_file() and not is_results_file(output):
            raise RunError(f"{output}: exists and is not a musictag log or result file; "
                           "not overwriting it")
    except OSError as error:
        raise RunError(f"{output}: cannot read ({error.strerror or error})") from None
