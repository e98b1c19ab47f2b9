"""Writing a file's tags into its own metadata (mutagen), where beets, Picard and players see them.

The values go into one multi-valued field whose name is configurable: ``MUSICTAG`` by default,
so nothing the user curated is touched, or ``GENRE``/``MOOD``, mapped to each format's own frame
as Picard maps them. Per format:

- MP3, WAV, AIFF (ID3v2.4, or v2.3 on request): ``TXXX:NAME``; GENRE -> ``TCON``; MOOD -> ``TMOO``
  (v2.4) or ``TXXX:MOOD`` (v2.3, which has no TMOO). v2.3 has no multi-valued text frames, so
  there the values are joined with "/"; converting a file to v2.3 drops the frames v2.3 cannot
  hold, as mutagen's conversion does.
- FLAC, Ogg Vorbis, Opus, Ogg FLAC/Speex (Vorbis comments): ``NAME``.
- MP4/M4A: freeform ``----:com.apple.iTunes:NAME``; GENRE -> ``©gen``.

A write is atomic and leaves the audio alone: the file is copied beside itself, mutagen rewrites
the copy's metadata blocks only, and the copy is renamed over the original (a symlink's target is
replaced; a hard link to the old file keeps the old contents). Every other tag survives.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import mutagen
from mutagen.aiff import AIFF
from mutagen.flac import FLAC
from mutagen.id3 import TCON, TMOO, TXXX, Encoding
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4, AtomDataType, MP4FreeForm
from mutagen.oggflac import OggFLAC
from mutagen.oggopus import OggOpus
from mutagen.oggspeex import OggSpeex
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

from ..audio import AudioError
from ..errors import RunError
from ..fileio import atomic_path
from . import DEFAULT_FIELD

ID3_TYPES = (MP3, WAVE, AIFF)
VORBIS_TYPES = (FLAC, OggVorbis, OggOpus, OggFLAC, OggSpeex)
MP4_FREEFORM = "----:com.apple.iTunes:"
#: How ID3v2.3 (and Picard, and mutagen) joins several values in one text frame.
ID3V23_SEPARATOR = "/"


class TagWriteError(AudioError):
    """A file whose metadata cannot be read or written; ``str()`` is the line users see."""


@dataclass(frozen=True)
class TagChange:
    path: str
    frame: str  # the field as this format stores it: TXXX:MUSICTAG, ©gen, MUSICTAG, ...
    old: tuple[str, ...]
    new: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def describe(self) -> str:
        if not self.changed:
            return f"{self.path}: {self.frame} unchanged ({'; '.join(self.new) or 'empty'})"
        return (f"{self.path}: {self.frame}: {'; '.join(self.old) or '(none)'} -> "
                f"{'; '.join(self.new) or '(removed)'}")


def check_field(field: str) -> str:
    """The field name upper-cased; Vorbis comments allow printable ASCII without ``=``."""
    name = field.strip().upper()
    if not name or any(not 0x20 <= ord(c) <= 0x7D or c == "=" for c in name):
        raise RunError(f"tag field {field!r}: use printable ASCII letters, digits, spaces or "
                       "punctuation other than '=' and '~'")
    return name


def _id3_frame(field: str, id3v23: bool) -> str:
    if field == "GENRE":
        return "TCON"
    if field == "MOOD" and not id3v23:
        return "TMOO"
    return f"TXXX:{field}"


def _read(audio: mutagen.FileType, frame: str) -> tuple[str, ...]:
    tags = audio.tags
    if tags is None:
        return ()
    if isinstance(audio, ID3_TYPES):
        return tuple(str(text) for found in tags.getall(frame) for text in found.text)
    if isinstance(audio, MP4):
        return tuple(bytes(value).decode("utf-8", "replace") if isinstance(value, bytes)
                     else str(value) for value in tags.get(frame, []))
    return tuple(tags.get(frame, []))


def _store(audio: mutagen.FileType, frame: str, values: tuple[str, ...]) -> None:
    if audio.tags is None:
        audio.add_tags()
    tags = audio.tags
    if isinstance(audio, ID3_TYPES):
        tags.delall(frame)
        if values:
            kind, _, desc = frame.partition(":")
            make = {"TCON": TCON, "TMOO": TMOO}.get(kind)
            tags.add(make(encoding=Encoding.UTF8, text=list(values)) if make else
                     TXXX(encoding=Encoding.UTF8, desc=desc, text=list(values)))
        return
    if frame in tags:
        del tags[frame]
    if values and isinstance(audio, MP4) and frame.startswith(MP4_FREEFORM):
        tags[frame] = [MP4FreeForm(value.encode("utf-8"), dataformat=AtomDataType.UTF8)
                       for value in values]
    elif values:
        tags[frame] = list(values)


def _open(path: Path) -> mutagen.FileType:
    try:
        audio = mutagen.File(path)
    except (mutagen.MutagenError, OSError) as error:
        raise TagWriteError(path, f"cannot read its metadata ({error})") from None
    if not isinstance(audio, (*ID3_TYPES, *VORBIS_TYPES, MP4)):
        kind = type(audio).__name__ if audio is not None else path.suffix or "this format"
        raise TagWriteError(path, f"writing tags into {kind} files is not supported "
                                  "(mp3, wav, aiff, flac, ogg, opus, m4a are)")
    return audio


def _frame(audio: mutagen.FileType, field: str, id3v23: bool) -> str:
    if isinstance(audio, ID3_TYPES):
        return _id3_frame(field, id3v23)
    if isinstance(audio, MP4):
        return "\xa9gen" if field == "GENRE" else MP4_FREEFORM + field
    return field


def _save(audio: mutagen.FileType, id3v23: bool) -> None:
    if isinstance(audio, ID3_TYPES):
        if id3v23:
            audio.tags.update_to_v23()
        audio.save(v2_version=3 if id3v23 else 4)
    else:
        audio.save()


def write_tags(path: str | os.PathLike, values: list[str], *, field: str = DEFAULT_FIELD,
               id3v23: bool = False, dry_run: bool = False) -> TagChange:
    """Set ``field`` of the file to ``values`` (none removes it); returns what changed.

    A file already holding exactly these values is left alone, keeping its modification time.
    """
    field = check_field(field)
    target = Path(os.path.realpath(path))
    audio = _open(target)
    frame = _frame(audio, field, id3v23)
    new = tuple(values)
    if id3v23 and isinstance(audio, ID3_TYPES) and new:
        new = (ID3V23_SEPARATOR.join(new),)  # v2.3 has no multi-valued text frames
    change = TagChange(str(path), frame, _read(audio, frame), new)
    if dry_run or not change.changed:
        return change
    try:
        with atomic_path(target) as copy:
            shutil.copy2(target, copy)
            audio = type(audio)(copy)
            _store(audio, frame, change.new)
            _save(audio, id3v23)
            with open(copy, "rb+") as handle:
                os.fsync(handle.fileno())
    except (mutagen.MutagenError, OSError) as error:
        raise TagWriteError(path, f"writing tags failed ({error})") from None
    return change
