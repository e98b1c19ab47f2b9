"""Writing files so that a crash or Ctrl-C never leaves a half-written result behind.

Everything the tool writes (tag results, weights, checkpoints, exported models) goes to a temporary
file in the destination folder and is renamed over the target only once complete; rename is atomic
on POSIX and Windows when both names are on the same file system.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

#: The process umask, read once at import (setting it to read it is not thread-safe later).
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``target``; renamed onto it when the block finishes without error.

    The result gets the replaced file's permissions, or those of a plainly created file for a
    new one (mkstemp makes the temporary file private, 0600, which a result must not stay).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                         dir=target.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_UMASK
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open()`` for writing whose result appears at ``target`` only when complete (fsynced)."""
    with atomic_path(target) as temporary, open(temporary, mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
