"""Atomic writes: whole results only, with the permissions a plainly written file would have."""

from __future__ import annotations

import fcntl
import json
import os

import pytest

from musictag import fileio
from musictag.fileio import atomic_open, atomic_path, json_dumps, remove_stale_temporaries


def test_a_new_file_gets_the_umask_permissions_not_mkstemps_private_ones(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    with atomic_open(tmp_path / "results.jsonl") as handle:
        handle.write("{}\n")
    assert (tmp_path / "results.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "card.json"
    target.write_text("old")
    target.chmod(0o640)
    with atomic_open(target) as handle:
        handle.write("new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.csv"]


def test_json_dumps_escapes_the_bytes_of_a_name_that_is_not_utf8():
    name = os.fsdecode(b"/music/b_\xff \xc3\xa9.flac")
    text = json_dumps({"path": name})
    assert text == '{"path": "/music/b_\\udcff é.flac"}'
    assert os.fsencode(json.loads(text.encode("utf-8"))["path"]) == b"/music/b_\xff \xc3\xa9.flac"


def test_stale_temporaries_go_and_live_or_foreign_ones_stay(tmp_path, monkeypatch):
    """Issue 21.9: a kill -9 mid-write left .NAME.XXXXXXXX.tmp beside NAME for ever."""
    (tmp_path / "a.flac").write_bytes(b"audio")
    stale = tmp_path / ".a.flac.k3j_9xq2.tmp"  # its writer was killed: nobody holds its lock
    live = tmp_path / ".a.flac.0abcdefg.tmp"  # a concurrent writer's
    foreign = [tmp_path / ".a.flac.notours.tmp", tmp_path / ".gone.flac.abcdefgh.tmp",
               tmp_path / "a.flac.abcdefgh.tmp"]  # wrong pattern, or no file of that name
    for path in (stale, live, *foreign):
        path.write_bytes(b"partial copy")
    monkeypatch.setattr(fileio, "STALE_AFTER_S", 0.0)
    with open(live, "rb") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)
        assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and all(path.exists() for path in foreign)
    monkeypatch.setattr(fileio, "STALE_AFTER_S", 600.0)
    assert remove_stale_temporaries(tmp_path) == []  # unlocked now, but written just now


def test_atomic_path_holds_the_lock_that_marks_its_temporary_live(tmp_path, monkeypatch):
    target = tmp_path / "a.flac"
    target.write_bytes(b"old")
    monkeypatch.setattr(fileio, "STALE_AFTER_S", 0.0)
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"new")
        assert fileio._TEMPORARY.fullmatch(temporary.name)  # a candidate, spared by its lock
        assert remove_stale_temporaries(tmp_path) == [] and temporary.exists()
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["a.flac"]
