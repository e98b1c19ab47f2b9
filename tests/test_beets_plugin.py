"""The beets plugin (beetsplug/musictag.py) against a real beets library, on the tiny model.

Each test has its own library and config (``BEETSDIR``) and runs ``beet`` as a subprocess, so
beets finds the plugin as a user's install does, through the ``beetsplug`` namespace; what was
stored is read back with beets' own ``Library`` and queries. A run that tags loads torch (about
4 s on this project's 2-core machine), so each test makes the most of a few of them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from beets.library import Library
from conftest import TINY_RATE_HZ, tone, write_audio, write_tiny_model

import musictag


@pytest.fixture(scope="module")
def album(tmp_path_factory) -> Path:
    """One album of three short tracks, two FLAC and one Ogg Vorbis: a tone, a noisy tone and
    noise, so that even the random tiny model scores them apart."""
    folder = tmp_path_factory.mktemp("album")
    rng = np.random.default_rng(0)
    n = 2 * TINY_RATE_HZ
    noise = rng.standard_normal(n).astype(np.float32)
    write_audio(folder / "a-tone.flac", tone(2.0, TINY_RATE_HZ, 220.0), TINY_RATE_HZ)
    write_audio(folder / "b-noisy.flac", tone(2.0, TINY_RATE_HZ, 1000.0) + 0.2 * noise,
                TINY_RATE_HZ)
    write_audio(folder / "c-noise.ogg", 0.3 * noise, TINY_RATE_HZ)
    return folder


@pytest.fixture(scope="module")
def scores(tiny_model, album) -> dict[str, list[tuple[str, float]]]:
    """Every tag by falling score, as musictag's own API gives them, for each file name."""
    tagger = musictag.load_tagger(str(tiny_model))
    return {Path(path).name: result.select(top_k=None)
            for path, result in tagger.tag_many(sorted(album.iterdir()))}


class Beets:
    """A beets library and config in a folder, and ``beet`` run on it as a subprocess."""

    def __init__(self, root: Path, album: Path, options: dict):
        self.root = root
        self.music = root / "music"
        shutil.copytree(album, self.music)
        (root / "library").mkdir()
        config = {"directory": str(root / "library"), "library": str(root / "library.db"),
                  "plugins": ["musictag"], "import": {"copy": False, "write": False},
                  "ui": {"color": False}, "create_backup_before_migrations": False,
                  "musictag": options}
        (root / "config.yaml").write_text(json.dumps(config))  # JSON is YAML

    def run(self, *args: str, check: int = 0) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "beets", *args], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=180,
                              env={**os.environ, "BEETSDIR": str(self.root)})
        assert done.returncode == check, done.stdout + done.stderr
        return done

    def stored(self, query: str = "") -> dict[str, dict]:
        """Each matching item's musictag attributes and genres, by file name."""
        library = Library(str(self.root / "library.db"))
        try:
            return {Path(os.fsdecode(item.path)).name: {
                        "musictag": item.get("musictag"), "model": item.get("musictag_model"),
                        "genres": item.genres} for item in library.items(query)}
        finally:
            library._close()


def top(scores: list[tuple[str, float]], *, k: int | None = None,
        threshold: float = 0.0) -> list[str]:
    return [tag for tag, score in scores if score >= threshold][:k]


def test_import_tags_then_the_command_pretends_forces_skips_and_survives_a_broken_file(
        tiny_model, album, scores, tmp_path):
    """Auto-tagging on import (the default) stores the top tags best first, joined as beets
    shows a list, the model's name and, with ``genre: yes``, the same tags as ``genres``;
    ``beet ls musictag:TAG`` finds the items by them. Then ``beet musictag``: ``-p -m CARD``
    shows another model's tags and stores nothing; ``-f`` tags again what the model tagged,
    logs the file that broke since and exits 1; a plain run skips every item the model tagged.
    The configured model is a name, registered through MUSICTAG_MODELS as conftest does."""
    beets = Beets(tmp_path / "beets", album, {"model": "tiny-test", "top_k": 3, "genre": True})
    beets.run("import", "-A", "-q", str(beets.music))
    stored = beets.stored()
    assert sorted(stored) == sorted(scores)
    for name, item in stored.items():
        tags = top(scores[name], k=3)
        assert item == {"musictag": "; ".join(tags), "model": "tiny-test", "genres": tags}
    tag = top(scores["a-tone.flac"], k=1)[0]
    listed = beets.run("ls", "-f", "$path", f"musictag:{tag}").stdout.split()
    assert sorted(Path(path).name for path in listed) == sorted(
        name for name in scores if tag in top(scores[name], k=3))
    assert beets.stored("musictag:no-such-tag") == {}

    other = write_tiny_model(tmp_path / "cards", name="tiny-other")
    shown = beets.run("musictag", "-p", "-m", str(other)).stdout
    assert shown.count("musictag_model: tiny-test -> tiny-other") == 3
    assert beets.stored() == stored

    library = Library(str(beets.root / "library.db"))
    for item in library.items("path:" + str(beets.music / "a-tone.flac")):
        item["musictag"] = "stale"
        item.store()
    library._close()
    broken = beets.music / "c-noise.ogg"
    broken.write_bytes(b"not audio at all" * 64)
    failed = beets.run("musictag", "-f", check=1)
    assert str(broken) in failed.stderr
    assert "error: musictag: 1 of 3 files could not be tagged" in failed.stderr
    assert beets.stored() == stored  # "stale" replaced; the broken file's tags kept

    again = beets.run("musictag")
    assert "skipping 3 items already tagged by tiny-test" in again.stderr
    assert not again.stdout.strip()


def test_auto_no_imports_without_tagging(tiny_model, album, tmp_path):
    beets = Beets(tmp_path, album, {"model": str(tiny_model), "auto": False})
    beets.run("import", "-A", "-q", str(beets.music))
    assert [item["model"] for item in beets.stored().values()] == [None] * 3


@pytest.mark.parametrize(("command", "options", "message"), [
    ("musictag", {"colour": "red"}, "musictag: unknown option colour"),
    ("musictag", {"top_k": 0}, "musictag.top_k: must be a whole number of at least 1"),
    ("import", {"thresholds": {"piano": 0.3}}, "musictag.thresholds: the model has no tag "
                                              "'piano'"),
])
def test_bad_options_are_one_line_errors_before_any_work(tiny_model, album, tmp_path, command,
                                                         options, message):
    """beets' own "configuration error" line, exit 1; ``beet import`` stops before it imports
    anything."""
    beets = Beets(tmp_path, album, {"model": str(tiny_model), **options})
    args = ["import", "-A", "-q", str(beets.music)] if command == "import" else [command]
    error = beets.run(*args, check=1).stderr.strip()
    assert error.startswith(f"configuration error: {message}") and "\n" not in error, error
    assert beets.stored() == {}
