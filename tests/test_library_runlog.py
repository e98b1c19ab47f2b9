"""Crash-safe result logs: a run killed with SIGKILL and resumed records every file exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_RATE_HZ, tone, write_audio, write_tiny_model
from typer.testing import CliRunner

from musictag import inference
from musictag.cli import app
from musictag.library.runlog import FileKey, LogInUseError, RunLog, read_records


def make_library(folder: Path, n_files: int, seconds: float = 3.0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_audio(folder / f"track{i:03d}.wav", tone(seconds, TINY_RATE_HZ, 150 + 20 * i),
                        TINY_RATE_HZ) for i in range(n_files)]


def tag(*args: object):
    return CliRunner().invoke(app, ["tag", "--model", "tiny-test", "-q", *map(str, args)])


def log_lines(path: Path) -> list[dict]:
    """Every line of the log, each of which must be whole JSON."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_kill_9_mid_run_then_resume_records_each_file_once(tiny_model, tmp_path):
    files = make_library(tmp_path / "music", 60, seconds=15.0)  # long enough to be killed
    log = tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "musictag", "tag", str(tmp_path / "music"),
               "--model", "tiny-test", "--output", str(log)]
    env = {**os.environ, "MUSICTAG_MODELS": str(tiny_model.parent)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and log.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL, "the run ended before it was killed"
    done_before = log.read_bytes().count(b"\n")
    assert 3 <= done_before < len(files)

    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done_before} of {len(files)} files already done" in resumed.stderr
    paths = [record["path"] for record in log_lines(log)]
    assert sorted(paths) == sorted(str(path) for path in files)  # each exactly once


def test_torn_last_line_is_ignored_then_cut_off(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"x" * 10)
    key = FileKey.of(tmp_path / "a.wav")
    path = tmp_path / "r.jsonl"
    with RunLog(path, resume=False).open() as log:
        log.append({"path": key.path, **key.fields(), "model": "m", "tags": []})
    with open(path, "ab") as handle:
        handle.write(b'{"path": "b.wav", "si')  # what kill -9 mid-write would leave
    assert [r["path"] for r in read_records(path)] == [key.path]

    log = RunLog(path, resume=True)
    assert log.is_done(key) and log.models == {"m"}
    with log.open():
        log.append_failure(FileKey(str(tmp_path / "b.wav"), 1, 2), "broken")
    assert [r["path"] for r in log_lines(path)] == [key.path, str(tmp_path / "b.wav")]


def test_changed_file_is_tagged_again(tmp_path):
    track = tmp_path / "a.wav"
    track.write_bytes(b"x" * 10)
    path = tmp_path / "r.jsonl"
    with RunLog(path, resume=False).open() as log:
        log.append({"path": str(track), **FileKey.of(track).fields(), "tags": []})
    assert RunLog(path, resume=True).is_done(FileKey.of(track))
    track.write_bytes(b"y" * 11)
    assert not RunLog(path, resume=True).is_done(FileKey.of(track))
    assert not RunLog(path, resume=False).is_done(FileKey.of(track))


def test_failed_files_are_retried_only_when_asked(tiny_model, tmp_path):
    make_library(tmp_path / "music", 2)
    broken = tmp_path / "music" / "broken.wav"
    broken.write_bytes(b"not audio at all")
    log = tmp_path / "r.jsonl"

    first = tag(tmp_path / "music", "--output", log)
    assert first.exit_code == 1
    failures = [r for r in log_lines(log) if "error" in r]
    assert [r["path"] for r in failures] == [str(broken)]
    assert "not a decodable audio file" in failures[0]["error"]

    again = tag(tmp_path / "music", "--output", log, "--resume")
    assert again.exit_code == 1  # the earlier failure still counts
    assert "1 of them failed" in again.stderr and "not a decodable" not in again.stderr
    assert len(log_lines(log)) == 3

    retried = tag(tmp_path / "music", "--output", log, "--resume", "--retry-failed")
    assert retried.exit_code == 1 and "not a decodable" in retried.stderr
    assert len(log_lines(log)) == 4

    write_audio(broken, tone(2.0, TINY_RATE_HZ), TINY_RATE_HZ)  # mended: a new size and mtime
    mended = tag(tmp_path / "music", "--output", log, "--resume")
    assert mended.exit_code == 0, mended.stderr
    assert "error" not in log_lines(log)[-1] and log_lines(log)[-1]["path"] == str(broken)


def test_second_run_skips_everything_without_loading_a_model(tiny_model, tmp_path,
                                                            monkeypatch):
    make_library(tmp_path / "music", 3)
    log = tmp_path / "r.jsonl"
    assert tag(tmp_path / "music", "--output", log).exit_code == 0
    before = log.read_bytes()
    monkeypatch.setattr(inference, "make_backend", lambda *a, **k: pytest.fail("model loaded"))
    second = tag(tmp_path / "music", "--output", log, "--resume")
    assert second.exit_code == 0, second.stderr
    assert "3 of 3 files already done" in second.stderr
    assert log.read_bytes() == before


def test_resume_refuses_a_log_of_another_model(tiny_model, tmp_path):
    make_library(tmp_path / "music", 2)
    log = tmp_path / "r.jsonl"
    assert tag(tmp_path / "music", "--output", log).exit_code == 0
    records = log_lines(log)
    records[0]["model"] = "some-other-model"
    log.write_text(json.dumps(records[0]) + "\n")
    refused = tag(tmp_path / "music", "--output", log, "--resume")
    assert refused.exit_code == 2 and "some-other-model" in refused.stderr


def test_resume_refuses_a_finished_log_of_another_model(tiny_model, tmp_path):
    """Issue 21.6: with nothing left to do, the model check used to be skipped (exit 0)."""
    make_library(tmp_path / "music", 2)
    log = tmp_path / "r.jsonl"
    assert tag(tmp_path / "music", "--output", log).exit_code == 0
    other = write_tiny_model(tmp_path / "cards", name="tiny-other")
    before = log.read_bytes()
    refused = CliRunner().invoke(app, ["tag", str(tmp_path / "music"), "--model", str(other),
                                       "--output", str(log), "--resume"])
    assert refused.exit_code == 2
    assert (f"{log} holds results of tiny-test, not tiny-other" in refused.stderr
            and "already done" not in refused.stderr)
    assert log.read_bytes() == before


def test_a_second_run_on_a_log_in_use_stops(tiny_model, tmp_path):
    """Issue 21.9: two runs on one log tagged every file twice; the log's lock stops the second."""
    make_library(tmp_path / "music", 2)
    path = tmp_path / "r.jsonl"
    with RunLog(path, resume=False).open() as first:
        first.append({"path": "x.wav", "size": 1, "mtime_ns": 1, "error": "in progress"})
        for options in ([], ["--resume"]):
            second = tag(tmp_path / "music", "--output", path, *options)
            assert second.exit_code == 2
            assert (f"{path}: another musictag run is writing this log (it holds the log's "
                    "lock)") in second.stderr
        with pytest.raises(LogInUseError):
            RunLog(path, resume=True).open()
    assert [r["path"] for r in log_lines(path)] == ["x.wav"]  # not cut by the refused runs
    assert tag(tmp_path / "music", "--output", path, "--resume").exit_code == 0  # lock released


@pytest.mark.parametrize("options, message", [
    (["--resume"], "need --output FILE in jsonl"),
    (["--output", "x.csv", "--format", "csv", "--resume"], "need --output FILE in jsonl"),
    (["--output", "x.jsonl", "--retry-failed"], "add --resume"),
    (["--tag-field", "GENRE"], "only apply with --write-tags"),
    (["--write-tags", "--tag-field", "A=B"], "tag field"),
])
def test_option_mistakes_are_one_line_errors(tiny_model, tmp_path, options, message):
    make_library(tmp_path / "music", 1)
    result = tag(tmp_path / "music", *options)
    assert result.exit_code == 2 and message in result.stderr
    assert "Traceback" not in result.stderr
