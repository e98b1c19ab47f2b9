"""What C libraries write to the process's stderr during a call, caught and handed back.

libmpg123 (inside libsndfile) prints notes such as ``Note: Illegal Audio-MPEG-Header 0x08f6a4e7
at offset 5019.`` straight to file descriptor 2 while it opens or decodes a damaged MP3. Python's
``sys.stderr`` and logging never see them, so they broke the promise of one line per bad file on
stderr. :func:`capture_notes` points fd 2 at a temporary file for the duration of one call, hands
the libraries' lines to the caller (which makes them one warning naming the file) and writes
anything else that arrived meanwhile, such as another thread's messages, on to the real stderr.

fd 2 belongs to the whole process, so captures are serialised by a lock. Each spans one decoder
call (a fraction of a second of audio), so other threads' output is delayed only that long and
lost never. Decoding in parallel happens in separate processes (the distillation and training
caches), each with its own fd 2.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

#: A line a C library writes: ``Note: ...``, ``Warning: ...``, ``[src/x.c:f():12] error: ...``.
_LIBRARY_LINE = re.compile(rb"(?:\[[^\]\n]*\] *)?(?:note|warning|error) *: *", re.IGNORECASE)
_LOCK = threading.Lock()
_sink: IO[bytes] | None = None


def _sink_fd() -> int:
    """An unlinked temporary file, made once: a pipe would block a writer once its buffer filled."""
    global _sink
    if _sink is None:
        _sink = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 (kept for the process's life)
    return _sink.fileno()


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):  # stderr gone: nothing more can be said there
        while data:
            data = data[os.write(fd, data):]


@contextlib.contextmanager
def capture_notes(notes: list[str]) -> Iterator[None]:
    """Run the block with fd 2 captured; the libraries' lines go to ``notes``, without the
    ``Note:`` or ``[file:line] error:`` in front.

    Without a usable fd 2 (stderr closed) the block runs as it is: nothing can leak there.
    """
    with _LOCK:
        sink = _sink_fd()
        try:
            saved = os.dup(2)
        except OSError:
            saved = None
        if saved is None:
            yield
            return
        os.ftruncate(sink, 0)
        os.lseek(sink, 0, os.SEEK_SET)
        os.dup2(sink, 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            others = []
            for line in _read_all(sink).splitlines(keepends=True):
                if match := _LIBRARY_LINE.match(line):
                    notes.append(line[match.end():].decode(errors="replace").strip())
                else:
                    others.append(line)
            _write_all(2, b"".join(others))
