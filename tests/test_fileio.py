"""Atomic writes: whole results only, with the permissions a plainly written file would have."""

from __future__ import annotations

import os

import pytest

from musictag.fileio import atomic_open


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
