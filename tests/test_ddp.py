"""Two CPU processes on the gloo backend, started by torchrun like a multi-GPU run would be."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import tiny_arch
from test_datasets import write_folder
from typer.testing import CliRunner

from musictag.cli import app
from musictag.registry import ModelCard


def test_two_process_ddp_run_shares_the_epoch_and_its_model_tags(tmp_path):
    labels = write_folder(tmp_path / "music", n_clips=24, seconds=2.0)
    config = tmp_path / "ddp.json"
    arch = {k: v for k, v in tiny_arch().items() if k != "n_classes"}
    config.write_text(json.dumps({"arch": arch, "sample_rate_hz": 8000, "batch_size": 4,
                                  "lr": 0.05, "max_epochs": 2, "workers": 1}))
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "musictag", "train", "--run-dir", str(run),
               "--dataset", "folder", "--data-dir", str(tmp_path / "music"), "--labels",
               str(labels), "--cache-dir", str(tmp_path / "cache"), "--config", str(config),
               "-q"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.split() == [str(run / "samplecnn-folder.json")]  # rank 0 only

    card = ModelCard.from_file(run / "samplecnn-folder.json")
    # 21 training clips: 11 per process, batches of 4, 4 and 3, so 3 steps per epoch
    # (one process alone would take 5)
    assert card.provenance["world_size"] == 2 and card.provenance["steps"] == 6
    with open(run / "log.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]

    tagged = CliRunner().invoke(app, ["tag", "--model", str(run / "samplecnn-folder.json"),
                                      str(tmp_path / "music" / "audio" / "song05.wav"),
                                      "--format", "json", "-q"])
    assert tagged.exit_code == 0, tagged.output
    record = json.loads(tagged.stdout)[0]
    assert record["model"] == "samplecnn-folder" and len(record["tags"]) == 5
