"""A library run from Python (musictag.library.run): settings checked together, resume, shards,
tags in files and the output guard, without the CLI and without a model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import TINY_RATE_HZ, tone, write_audio

from musictag.audio import AudioError
from musictag.cli.library import RULE_MESSAGES
from musictag.errors import RunError, SettingsError
from musictag.library.run import LibraryRun, Rule, check_output
from musictag.library.tagwriter import write_tags


def library(folder: Path, n_files: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_audio(folder / f"t{i}.wav", tone(1.0, TINY_RATE_HZ, 200 + 50 * i),
                        TINY_RATE_HZ) for i in range(n_files)]


def record(path: Path, model: str = "m") -> dict:
    return {"path": str(path), "model": model, "tags": [{"tag": "rock", "score": 0.9}]}


def run_once(log: Path, done: list[Path], failed: list[Path], **settings) -> None:
    """What `musictag tag --output log` records: the files in ``done`` tagged, ``failed`` not."""
    run = LibraryRun.start(output=log, fmt="jsonl", **settings)
    with run.open_output() as stream:
        for path in done:
            entry = record(path)
            run.tagged(path, entry)
            stream.write(json.dumps(entry) + "\n")
            stream.flush()
        for path in failed:
            run.failed(path, AudioError(path, "not a decodable audio file"))


@pytest.mark.parametrize("settings, rule", [
    ({"output": None, "resume": True}, Rule.LOG_NEEDED),
    ({"output": "r.csv", "fmt": "csv", "resume": True}, Rule.LOG_NEEDED),
    ({"output": None, "retry_failed": True}, Rule.LOG_NEEDED),
    ({"output": "r.jsonl", "retry_failed": True}, Rule.RESUME_NEEDED),
    ({"output": None, "tag_field": "GENRE"}, Rule.TAGS_NOT_WRITTEN),
    ({"output": None, "id3v23": True}, Rule.TAGS_NOT_WRITTEN),
])
def test_settings_that_make_no_sense_together_raise_a_settings_error(tmp_path, settings, rule):
    output = settings.pop("output")
    settings.setdefault("fmt", "jsonl")
    with pytest.raises(SettingsError) as caught:
        LibraryRun.start(output=output and tmp_path / output, **settings)
    assert caught.value.rule is rule and isinstance(caught.value, RunError)
    assert "--" not in str(caught.value)  # parameters, not flags: the CLI words it in flags
    assert not (tmp_path / "r.jsonl").exists()


def test_every_rule_has_a_line_in_the_cli():
    assert set(RULE_MESSAGES) == set(Rule)
    assert all("--" in message for message in RULE_MESSAGES.values())


def test_a_dry_run_takes_a_tag_field_and_writes_nothing(tmp_path):
    [path] = library(tmp_path / "music", 1)
    before = path.read_bytes()
    run = LibraryRun.start(output=None, fmt="jsonl", dry_run=True, tag_field="genre")
    assert run.tag_field == "GENRE"
    entry = record(path)
    change = run.tagged(path, entry)
    assert change is not None and change.new == ("rock",) and change.old == ()
    assert "written_to" not in entry and path.read_bytes() == before


def test_written_tags_are_returned_recorded_and_in_the_file(tmp_path):
    [path] = library(tmp_path / "music", 1)
    run = LibraryRun.start(output=tmp_path / "r.jsonl", fmt="jsonl", write_tags=True)
    entry = record(path)
    change = run.tagged(path, entry)
    assert change is not None and change.changed
    assert entry["written_to"] == "MUSICTAG" and entry["size"] == path.stat().st_size
    assert write_tags(path, [], dry_run=True).old == ("rock",)  # what the file now holds


def test_without_tag_writing_tagged_changes_no_file(tmp_path):
    [path] = library(tmp_path / "music", 1)
    entry = record(path)
    assert LibraryRun.start(output=None, fmt="jsonl").tagged(path, entry) is None
    assert "mtime_ns" not in entry  # no log to resume from: no key to stamp


def test_resume_skips_what_the_log_has_done(tmp_path):
    a, b, c = library(tmp_path / "music", 3)
    log = tmp_path / "r.jsonl"
    run_once(log, done=[a], failed=[b])

    resumed = LibraryRun.start(output=log, fmt="jsonl", resume=True).select([c, a, b, a])
    assert (resumed.todo, resumed.total, resumed.skipped) == ([c], 3, 2)
    assert resumed.failed_earlier == 1 and resumed.resumed

    retried = LibraryRun.start(output=log, fmt="jsonl", resume=True, retry_failed=True)
    assert retried.select([a, b, c]).todo == [b, c]

    os.utime(a, ns=(0, a.stat().st_mtime_ns + 10**9))  # edited since: tagged again
    assert LibraryRun.start(output=log, fmt="jsonl", resume=True).select([a, b]).todo == [a]


def test_resume_asked_for_tags_in_files_redoes_files_whose_tags_were_not_written(tmp_path):
    a, b = library(tmp_path / "music", 2)
    log = tmp_path / "r.jsonl"
    run_once(log, done=[a, b], failed=[])
    run_once(log, done=[a], failed=[], resume=True, write_tags=True)
    asked = LibraryRun.start(output=log, fmt="jsonl", resume=True, write_tags=True)
    assert asked.select([a, b]).todo == [b]
    other_field = LibraryRun.start(output=log, fmt="jsonl", resume=True, write_tags=True,
                                   tag_field="GENRE")
    assert other_field.select([a, b]).todo == [a, b]


def test_without_resume_the_log_starts_afresh(tmp_path):
    a, b = library(tmp_path / "music", 2)
    log = tmp_path / "r.jsonl"
    run_once(log, done=[a, b], failed=[])
    fresh = LibraryRun.start(output=log, fmt="jsonl").select([a, b])
    assert fresh.todo == [a, b] and not fresh.resumed


def test_a_shard_is_every_nth_file_of_the_sorted_list(tmp_path):
    files = [tmp_path / f"{name}.wav" for name in "fbdaec"]
    selection = LibraryRun.start(output=None, fmt="jsonl", shard="2/3").select(files + files)
    assert selection.todo == [tmp_path / "b.wav", tmp_path / "e.wav"]
    assert selection.total == 2 and not selection.resumed
    with pytest.raises(RunError, match="shard '4/3'"):
        LibraryRun.start(output=None, fmt="jsonl", shard="4/3")


def test_a_log_of_another_model_is_refused_and_a_fresh_run_reads_no_card(tmp_path):
    [a] = library(tmp_path / "music", 1)
    log = tmp_path / "r.jsonl"

    def no_card() -> str:
        raise AssertionError("the card was read for a fresh run")

    LibraryRun.start(output=log, fmt="jsonl").check_model(no_card)
    run_once(log, done=[a], failed=[])
    resumed = LibraryRun.start(output=log, fmt="jsonl", resume=True)
    resumed.check_model(lambda: "m")
    with pytest.raises(RunError, match=f"{log} holds results of m, not other"):
        resumed.check_model(lambda: "other")


def test_an_output_that_is_not_musictags_is_refused_untouched(tmp_path):
    [victim] = library(tmp_path, 1)
    before = victim.read_bytes()
    for resume in (False, True):
        with pytest.raises(RunError, match="not a musictag log or result file"):
            LibraryRun.start(output=victim, fmt="jsonl", resume=resume)
    assert victim.read_bytes() == before
    with pytest.raises(SettingsError) as caught:
        check_output(tmp_path)
    assert caught.value.rule is Rule.OUTPUT_IS_FOLDER


def test_an_output_musictag_wrote_is_accepted(tmp_path):
    [a] = library(tmp_path / "music", 1)
    log = tmp_path / "r.jsonl"
    run_once(log, done=[a], failed=[])
    check_output(log)
    check_output(tmp_path / "new.jsonl")  # absent: nothing to lose


def test_an_output_that_cannot_be_created_is_a_run_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = LibraryRun.start(output=blocker / "r.jsonl", fmt="jsonl")
    with pytest.raises(RunError, match="cannot write"), run.open_output():
        pass
