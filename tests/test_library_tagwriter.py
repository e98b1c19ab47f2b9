"""Tags written into mp3, flac, ogg, opus and m4a: the audio and all other tags stay unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import av
import mutagen
import numpy as np
import pytest
import soundfile
from conftest import TINY_RATE_HZ, tone, write_audio
from mutagen.id3 import COMM, TCON, TIT2, TPE1, TXXX
from mutagen.mp4 import MP4FreeForm
from typer.testing import CliRunner

from musictag import fileio
from musictag.cli import app
from musictag.library.tagwriter import TagWriteError, write_tags

FORMATS = ("mp3", "flac", "ogg", "opus", "m4a")


def decode(path: Path) -> np.ndarray:
    """Every sample the file's decoder gives, as stored (no resampling, no downmix)."""
    if path.suffix == ".m4a":
        with av.open(str(path)) as container:
            return np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)],
                                  axis=1)
    return soundfile.read(str(path), dtype="float32", always_2d=True)[0]


def with_user_tags(path: Path) -> Path:
    """Tags a person's library has: title, artist, genre, a custom field (and an ID3 comment)."""
    audio = mutagen.File(path)
    if audio.tags is None:
        audio.add_tags()
    if path.suffix == ".mp3":
        for frame in (TIT2(encoding=3, text=["Title"]), TPE1(encoding=3, text=["Artist"]),
                      TCON(encoding=3, text=["Jazz"]), TXXX(encoding=3, desc="OTHER",
                                                            text=["keep me"]),
                      COMM(encoding=3, lang="eng", desc="", text=["a comment"])):
            audio.tags.add(frame)
    elif path.suffix == ".m4a":
        audio.tags.update({"\xa9nam": ["Title"], "\xa9ART": ["Artist"], "\xa9gen": ["Jazz"],
                           "----:com.apple.iTunes:OTHER": [MP4FreeForm(b"keep me")]})
    else:
        audio.tags.update({"TITLE": ["Title"], "ARTIST": ["Artist"], "GENRE": ["Jazz"],
                           "OTHER": ["keep me"]})
    audio.save()
    return path


def make_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, ext in enumerate(FORMATS):
        rate = 48000 if ext == "opus" else TINY_RATE_HZ
        signal = tone(2.5, rate, 220 + 110 * i, channels=2)
        files.append(with_user_tags(write_audio(folder / f"track.{ext}", signal, rate)))
    return files


def others(path: Path, frame: str) -> dict[str, str]:
    """Every field of the file but ``frame`` (as this format names it), with its values."""
    tags = mutagen.File(path).tags
    if path.suffix == ".mp3":
        fields = {key: repr(tags[key]) for key in tags}
    elif path.suffix == ".m4a":
        fields = {key: repr(value) for key, value in tags.items()}
    else:
        fields = {key.upper(): repr(values) for key, values in tags.as_dict().items()}
    fields.pop(frame, None)
    return fields


def stored(path: Path, frame: str) -> list[str]:
    tags = mutagen.File(path).tags
    if path.suffix == ".mp3":
        return [text for found in tags.getall(frame) for text in found.text]
    values = tags.get(frame, [])
    return [bytes(v).decode() if isinstance(v, MP4FreeForm) else str(v) for v in values]


def frame_of(path: Path) -> str:
    return {".mp3": "TXXX:MUSICTAG", ".m4a": "----:com.apple.iTunes:MUSICTAG"}.get(path.suffix,
                                                                                  "MUSICTAG")


def test_write_tags_keeps_audio_and_other_tags_in_every_format(tiny_model, tmp_path):
    files = make_files(tmp_path / "music")
    audio_before = {path: decode(path) for path in files}
    tags_before = {path: others(path, frame_of(path)) for path in files}
    assert all(len(fields) >= 4 for fields in tags_before.values())
    log = tmp_path / "r.jsonl"

    result = CliRunner().invoke(app, ["tag", str(tmp_path / "music"), "--model", "tiny-test",
                                      "--write-tags", "-k", "3", "--output", str(log)])
    assert result.exit_code == 0, result.stderr
    records = {r["path"]: r for r in map(json.loads, log.read_text().splitlines())}
    for path in files:
        frame = frame_of(path)
        expected = [item["tag"] for item in records[str(path)]["tags"]]
        assert len(expected) == 3 and stored(path, frame) == expected
        assert records[str(path)]["written_to"] == "MUSICTAG"
        assert records[str(path)]["size"] == path.stat().st_size  # the key after writing
        assert others(path, frame) == tags_before[path]
        np.testing.assert_array_equal(decode(path), audio_before[path])
    assert not list((tmp_path / "music").glob(".*"))  # no temporary copies left behind

    again = CliRunner().invoke(app, ["tag", str(tmp_path / "music"), "--model", "tiny-test",
                                     "--write-tags", "-k", "3", "--output", str(log),
                                     "--resume"])
    assert again.exit_code == 0 and "5 of 5 files already done" in again.stderr


@pytest.mark.parametrize("ext, frame", [("mp3", "TCON"), ("flac", "GENRE"), ("ogg", "GENRE"),
                                        ("opus", "GENRE"), ("m4a", "\xa9gen")])
def test_genre_field_replaces_the_genre_only(tmp_path, ext, frame):
    path = next(p for p in make_files(tmp_path) if p.suffix == f".{ext}")
    samples, before = decode(path), others(path, frame)
    change = write_tags(path, ["rock", "female vocal"], field="genre")
    assert (change.frame, change.old, change.new) == (frame, ("Jazz",), ("rock", "female vocal"))
    assert stored(path, frame) == ["rock", "female vocal"]
    assert others(path, frame) == before
    np.testing.assert_array_equal(decode(path), samples)


def test_mood_and_id3v23(tmp_path):
    path = next(p for p in make_files(tmp_path) if p.suffix == ".mp3")
    assert write_tags(path, ["happy", "calm"], field="MOOD").frame == "TMOO"
    assert mutagen.File(path).tags.version[:2] == (2, 4)
    change = write_tags(path, ["happy", "calm"], field="MOOD", id3v23=True)
    assert change.frame == "TXXX:MOOD" and change.new == ("happy/calm",)
    tags = mutagen.File(path).tags
    assert tags.version[:2] == (2, 3)
    assert tags.getall("TIT2")[0].text == ["Title"] and tags.getall("TXXX:OTHER")[0].text == [
        "keep me"]
    assert not write_tags(path, ["happy", "calm"], field="MOOD", id3v23=True).changed


def test_dry_run_and_unchanged_values_leave_the_file_alone(tiny_model, tmp_path):
    path = next(p for p in make_files(tmp_path / "music") if p.suffix == ".flac")
    content = path.read_bytes()
    result = CliRunner().invoke(app, ["tag", str(path), "--model", "tiny-test", "--write-tags",
                                      "--dry-run", "-k", "2", "-f", "jsonl"])
    assert result.exit_code == 0, result.stderr
    assert f"{path}: MUSICTAG: (none) -> " in result.stderr
    assert path.read_bytes() == content

    write_tags(path, ["a", "b"])
    mtime = path.stat().st_mtime_ns
    assert not write_tags(path, ["a", "b"]).changed
    assert path.stat().st_mtime_ns == mtime
    assert write_tags(path, []).changed and stored(path, "MUSICTAG") == []


def test_unwritable_files_are_one_line_errors(tmp_path):
    path = tmp_path / "song.caf"
    soundfile.write(str(path), tone(1.0, TINY_RATE_HZ), TINY_RATE_HZ, format="CAF")
    with pytest.raises(TagWriteError, match=r"song\.caf: writing tags into .* not supported"):
        write_tags(path, ["rock"])
    with pytest.raises(ValueError, match="tag field"):
        write_tags(path, ["rock"], field="A=B")


def test_write_tags_removes_what_a_killed_write_left(tiny_model, tmp_path, monkeypatch):
    """Issue 21.9: the temporary of a write killed mid-copy goes with the next write there."""
    path = write_audio(tmp_path / "a.flac", tone(2.0, TINY_RATE_HZ), TINY_RATE_HZ)
    leftover = tmp_path / ".a.flac.x8_4kq0z.tmp"
    leftover.write_bytes(path.read_bytes()[:100])
    monkeypatch.setattr(fileio, "STALE_AFTER_S", 0.0)  # as if it had lain there for long
    result = CliRunner().invoke(app, ["tag", str(path), "--model", "tiny-test", "--write-tags"])
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac"]
