"""Writing files so that a crash or Ctrl-C never leaves a half-written result behind.

Everything the tool writes (tag results, weights, checkpoints, exported models) goes to a temporary
file in the destination folder and is renamed over the target only once complete; rename is atomic
on POSIX when both names are on the same file system. A ``kill -9`` between the two leaves the
temporary, ``.NAME.XXXXXXXX.tmp``; :func:`remove_stale_temporaries` removes such leftovers, telling
them from a live writer's by the ``flock`` every writer holds on its temporary.

File names need not be valid UTF-8 on POSIX; Python holds their undecodable bytes as lone
surrogates (``os.fsdecode``), which a UTF-8 stream refuses. :func:`json_dumps` writes them as
``\\udcXX`` escapes, so ``os.fsencode(json.loads(text)["path"])`` gives the name's bytes back.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_SURROGATE = re.compile("[\ud800-\udfff]")


def json_dumps(value: object, *, indent: int | None = None) -> str:
    """``json.dumps`` keeping non-ASCII text as it is, with lone surrogates as ``\\uXXXX``.

    ``ensure_ascii=False`` would leave the surrogates raw, and writing them as UTF-8 fails
    (the ``UnicodeEncodeError`` that a file named ``b_\\xff.flac`` used to end a run with). A raw
    surrogate only occurs inside a JSON string, so replacing it there cannot change the syntax.
    """
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


#: A temporary of :func:`atomic_path`: ``.`` + the target's name + mkstemp's 8 random characters.
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")
#: A temporary unchanged this long (by its ctime, which copying metadata cannot set back) may
#: be stale; younger ones are left alone whatever their lock says, covering the moment between
#: mkstemp and flock and any writer that does not lock (an older musictag).
STALE_AFTER_S = 600.0

#: The process umask, read once at import (setting it to read it is not thread-safe later).
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``target``; renamed onto it when the block finishes without error.

    The result gets the replaced file's permissions, or those of a plainly created file for a
    new one (mkstemp makes the temporary file private, 0600, which a result must not stay). An
    exclusive ``flock`` on the temporary is held until the block ends, so that another process's
    :func:`remove_stale_temporaries` sees it as live.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                         dir=target.parent)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield Path(temporary)
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_UMASK
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        os.close(handle)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries :func:`atomic_path` left in ``folder`` when its writer died.

    Only names of its pattern whose target exists beside them are candidates (nothing another
    program wrote), and of those only ones unchanged for :data:`STALE_AFTER_S` whose lock can be
    taken: a writer holds its lock until it finishes, and the kernel drops it when the writer dies,
    so a concurrent run's temporary is never touched. Returns the paths removed.
    """
    folder = Path(folder)
    names = set(os.listdir(folder))
    removed = []
    for name in sorted(names):
        match = _TEMPORARY.fullmatch(name)
        if match is None or match["target"] not in names:
            continue
        candidate = folder / name
        with contextlib.suppress(OSError):  # gone meanwhile (its writer finished), or not ours
            handle = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                status = os.fstat(handle)
                if (not stat.S_ISREG(status.st_mode)
                        or time.time() - status.st_ctime < STALE_AFTER_S):
                    continue
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while its writer lives
                os.unlink(candidate)
                removed.append(candidate)
            finally:
                os.close(handle)
    return removed


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open()`` for writing whose result appears at ``target`` only when complete (fsynced)."""
    with atomic_path(target) as temporary, open(temporary, mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
