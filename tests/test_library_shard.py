"""Shards cover a library exactly once, whatever order the jobs list it in; merging joins them."""

from __future__ import annotations

import json
import random

import pytest
from conftest import TINY_RATE_HZ, tone, write_audio
from typer.testing import CliRunner

from musictag.cli import app
from musictag.library.shard import merge_shards, parse_shard, select_shard


@pytest.mark.parametrize("n", [1, 3, 7])
def test_shards_cover_the_list_exactly_once(n):
    files = [f"music/{artist}/{track:02d}.flac" for artist in "abcdefg" for track in range(13)]
    shards = []
    for k in range(1, n + 1):
        listing = files[:]
        random.Random(k).shuffle(listing)  # every job may list the folder in its own order
        shards.append(select_shard(listing + listing[:5], k, n))  # duplicates count once
    chosen = [path for shard in shards for path in shard]
    assert sorted(chosen) == sorted(files)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "1/2/3"])
def test_bad_shard_names_are_refused(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_parse_shard_reads_k_of_n():
    assert parse_shard("3/8") == (3, 8)


def test_merge_keeps_the_last_record_of_each_file(tmp_path):
    first, second = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    first.write_text('{"path": "b", "error": "broken"}\n{"path": "a", "tags": []}\n'
                     '{"path": "c", "t')  # a torn last line from a killed job
    second.write_text('{"path": "b", "tags": [{"tag": "rock", "score": 0.9}]}\n')
    merged = merge_shards([first, second])
    assert [r["path"] for r in merged] == ["a", "b"]
    assert "error" not in merged[1]


def test_shard_runs_and_merge_shards_give_every_file_once(tiny_model, tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    files = [write_audio(music / f"{i}.wav", tone(1.5, TINY_RATE_HZ, 200 + 30 * i),
                         TINY_RATE_HZ) for i in range(7)]
    logs = []
    for k in (1, 2, 3):
        logs.append(tmp_path / f"shard-{k}.jsonl")
        result = CliRunner().invoke(app, ["tag", str(music), "--model", "tiny-test",
                                          "--shard", f"{k}/3", "--output", str(logs[-1])])
        assert result.exit_code == 0, result.stderr
    sizes = [len(log.read_text().splitlines()) for log in logs]
    assert sorted(sizes) == [2, 2, 3]

    merged = CliRunner().invoke(app, ["merge-shards", *map(str, logs), "-o",
                                      str(tmp_path / "all.jsonl")])
    assert merged.exit_code == 0, merged.stderr
    records = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [r["path"] for r in records] == sorted(str(f) for f in files)
    assert all(r["model"] == "tiny-test" and r["tags"] for r in records)


def test_merge_shards_names_a_missing_log(tmp_path):
    result = CliRunner().invoke(app, ["merge-shards", str(tmp_path / "nope.jsonl"), "-o",
                                      str(tmp_path / "all.jsonl")])
    assert result.exit_code == 2 and "nope.jsonl: no such file" in result.stderr


def test_merge_shards_refuses_logs_of_different_models(tmp_path):
    """Issue 21.9: shards of two models were mixed into one file without a word."""
    first, second = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    first.write_text('{"path": "a", "model": "samplecnn", "tags": []}\n')
    second.write_text('{"path": "c", "error": "broken"}\n'
                      '{"path": "b", "model": "musicnn-mtt-musicnn", "tags": []}\n')
    with pytest.raises(ValueError, match="musicnn-mtt-musicnn .*2.jsonl.*samplecnn .*1.jsonl"):
        merge_shards([first, second])
    result = CliRunner().invoke(app, ["merge-shards", str(first), str(second), "-o",
                                      str(tmp_path / "all.jsonl")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"musictag: error: the logs hold results of different models: musicnn-mtt-musicnn "
        f"({second}), samplecnn ({first})")
    assert not (tmp_path / "all.jsonl").exists()


def test_merge_shards_will_not_overwrite_a_file_it_did_not_write(tmp_path):
    log = tmp_path / "1.jsonl"
    log.write_text('{"path": "a", "model": "samplecnn", "tags": []}\n')
    victim = tmp_path / "song.flac"
    victim.write_bytes(b"fLaC\x00\x00\x00\x22audio")
    result = CliRunner().invoke(app, ["merge-shards", str(log), "-o", str(victim)])
    assert result.exit_code == 2 and f"{victim}: exists and is not a musictag" in result.stderr
    assert victim.read_bytes() == b"fLaC\x00\x00\x00\x22audio"
