"""`--engine ray` on a real local Ray (2 CPUs, 100 MB object store): the local engine's records,
log, resume, tags in files and embeddings, on the tiny model of conftest.py.

Skipped only where ray is not installed and this is not CI (CI installs it with the dev extra).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import mutagen
import numpy as np
import pytest
from conftest import tone, write_audio
from typer.testing import CliRunner

os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")
try:
    import ray
    import ray.data
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("ray is not installed (pip install 'musictag[ray]')", allow_module_level=True)

import musictag
from musictag.cli import app
from musictag.library.runlog import read_records
from musictag.output import tag_records
from musictag.scale import ray_tag

#: Ray Data reads its own deprecated settings when it copies its context for a run.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
RATE = 8000  # the tiny model's rate, so that no test time goes to resampling
RAY = ("--engine", "ray", "--cpus-per-actor", "1")


@pytest.fixture(scope="module")
def ray_cluster(tiny_model):
    """A local Ray for this module; started after tiny_model, so its workers see the card."""
    ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False,
             log_to_driver=False, logging_level="warning")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    """Five FLAC tracks of 1-3 s and a file that is not audio in an audio file's name."""
    root = tmp_path_factory.mktemp("ray-music")
    for number in range(5):
        write_audio(root / f"track{number}.flac",
                    tone(1.0 + number * 0.5, RATE, 200.0 + 150 * number), RATE)
    (root / "broken.flac").write_bytes(b"fLaC not really")
    return root


def tracks(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def tag(*args):
    return CliRunner().invoke(app, ["tag", "--model", "tiny-test", *map(str, args)])


def rounded(value):
    """Scores to 4 decimals: two processes may sum a batch in another order (1e-7 apart)."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def by_path(records) -> dict[str, dict]:
    return {record["path"]: rounded(record) for record in records}


def test_ray_writes_the_local_engines_log_and_a_broken_file_fails_alone(ray_cluster, music,
                                                                       tmp_path):
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    done = tag(music, "--all-scores", "--threads", "1", "--output", local)
    assert done.exit_code == 1, done.stderr
    done = tag(music, *RAY, "--all-scores", "--output", remote)
    assert done.exit_code == 1, done.stderr  # exit 1: one file failed, as with the local engine
    assert "broken.flac" in done.stderr
    records = list(read_records(remote))
    assert by_path(records) == by_path(read_records(local))
    assert len(records) == 6
    broken = next(record for record in records if "error" in record)
    assert broken["path"] == str(music / "broken.flac") and set(broken) == {
        "path", "size", "mtime_ns", "error"}


def test_ray_resume_tags_only_what_a_killed_run_left_and_writes_tags(ray_cluster, music,
                                                                     tmp_path):
    folder = tmp_path / "music"
    shutil.copytree(music, folder)
    (folder / "broken.flac").unlink()
    log = tmp_path / "results.jsonl"
    files = tracks(folder)
    done = tag(*files[:2], "--write-tags", "--output", log)  # the part a killed run finished
    assert done.exit_code == 0, done.stderr
    finished = log.read_bytes()
    with open(log, "ab") as handle:  # killed while writing the third record
        handle.write(f'{{"path": "{files[2]}", "model": "tiny'.encode())
    done = tag(folder, *RAY, "--write-tags", "--output", log, "--resume")
    assert done.exit_code == 0, done.stderr
    assert "2 of 5 files already done" in done.stderr
    assert log.read_bytes().startswith(finished)  # the torn line is cut, the rest kept
    records = list(read_records(log))
    assert sorted(record["path"] for record in records) == [str(path) for path in files]
    for record in records:
        assert record["written_to"] == "MUSICTAG"
        stored = mutagen.File(record["path"])["MUSICTAG"]
        assert stored == [item["tag"] for item in record["tags"]]
    done = tag(folder, *RAY, "--write-tags", "--output", log, "--resume")
    assert done.exit_code == 0 and "5 of 5 files already done" in done.stderr


def test_ray_tag_is_a_dataset_of_the_local_records(ray_cluster, music):
    files = tracks(music)
    dataset = ray_tag(files, model="tiny-test", top_k=3, actors=2, cpus_per_actor=1,
                      files_per_batch=2)
    assert isinstance(dataset, ray.data.Dataset)
    rows = dataset.take_all()
    assert sorted(row["index"] for row in rows) == list(range(len(files)))
    failed = [row for row in rows if row["error"] is not None]
    assert [row["path"] for row in failed] == [str(music / "broken.flac")]
    assert failed[0]["record"] is None
    local = musictag.load_tagger("tiny-test", threads=1)
    expected = by_path(record for _, record in tag_records(local, files, top_k=3)
                       if isinstance(record, dict))
    assert by_path(json.loads(row["record"]) for row in rows if row["record"]) == expected


def test_ray_embed_matches_the_local_index(ray_cluster, music, tmp_path):
    indexes = {}
    for engine in ("local", "ray"):
        indexes[engine] = tmp_path / f"{engine}.npz"
        done = CliRunner().invoke(app, ["embed", str(music), "--model", "tiny-test",
                                        "--engine", engine, "-o", str(indexes[engine]),
                                        "--per-window"])
        assert done.exit_code == 1, done.stderr  # the broken file
        assert "broken.flac" in done.stderr
    vectors = {}
    for engine, path in indexes.items():
        index = musictag.library.embed.EmbeddingIndex.load(path)
        vectors[engine] = dict(zip(index.paths, index.embeddings, strict=True))
        assert index.model == "tiny-test" and len(index.window_file) >= 5
    assert vectors["local"].keys() == vectors["ray"].keys()
    for path, vector in vectors["local"].items():
        np.testing.assert_allclose(vectors["ray"][path], vector, atol=1e-5)
