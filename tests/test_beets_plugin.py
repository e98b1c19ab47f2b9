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

import confuse
import pytest
from beets.library import Library
from beets.ui import UserError
from conftest import TINY_RATE_HZ, tone, write_audio, write_tiny_model

import musictag
from beetsplug.musictag import DEFAULTS, read_settings


@pytest.fixture(scope="module")
def album(tmp_path_factory) -> Path:
    """One album of three short tracks: two FLAC files and an Ogg Vorbis one."""
    folder = tmp_path_factory.mktemp("album")
    for name, freq_hz in [("a-tone.flac", 220.0), ("b-tone.flac", 440.0), ("c-tone.ogg", 880.0)]:
        write_audio(folder / name, tone(2.0, TINY_RATE_HZ, freq_hz), TINY_RATE_HZ)
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
    shows what tagging with another model would change and stores nothing; ``-f`` tags again
    what the model tagged, logs the file that broke since and exits 1; a plain run skips every
    item the model tagged. The configured model is a name, registered through MUSICTAG_MODELS
    as conftest does."""
    beets = Beets(tmp_path / "beets", album, {"model": "tiny-test", "top_k": 3, "genre": True})
    beets.run("import", "-A", "-q", str(beets.music))
    stored = beets.stored()
    assert sorted(stored) == sorted(scores)
    for name, item in stored.items():
        tags = top(scores[name], k=3)
        assert item == {"musictag": "; ".join(tags), "model": "tiny-test", "genres": tags}

    ranked = [tag for tag, _ in scores["a-tone.flac"]]
    best, fourth = ranked[0], ranked[3]  # a selected tag, and one that top_k 3 leaves out
    having = {tag: sorted(name for name in scores if tag in top(scores[name], k=3))
              for tag in (best, fourth)}
    listed = beets.run("ls", "-f", "$path", f"musictag:{best}").stdout.split()
    assert sorted(Path(path).name for path in listed) == having[best] != []
    assert sorted(beets.stored(f"musictag:{fourth}")) == having[fourth]

    other = write_tiny_model(tmp_path / "cards", name="tiny-other")
    shown = beets.run("musictag", "-p", "-m", str(other)).stdout
    assert shown.count("musictag_model: tiny-test -> tiny-other") == 3
    assert beets.stored() == stored

    library = Library(str(beets.root / "library.db"))
    for item in library.items("path:" + str(beets.music / "a-tone.flac")):
        item["musictag"] = "stale"
        item.store()
    library._close()
    broken = beets.music / "c-tone.ogg"
    broken.write_bytes(b"not audio at all" * 64)
    failed = beets.run("musictag", "-f", check=1)
    assert str(broken) in failed.stderr
    assert "error: musictag: 1 of 3 files could not be tagged" in failed.stderr
    assert beets.stored() == stored  # "stale" replaced; the broken file's tags kept

    again = beets.run("musictag")
    assert "skipping 3 items already tagged by tiny-test" in again.stderr
    assert not again.stdout.strip()


def test_auto_no_imports_without_tagging(tiny_model, album, tmp_path):
    """``auto: no`` leaves ``beet import`` to import only (and loads no model)."""
    beets = Beets(tmp_path, album, {"model": str(tiny_model), "auto": False})
    beets.run("import", "-A", "-q", str(beets.music))
    assert [item["model"] for item in beets.stored().values()] == [None] * 3


def test_a_bad_option_stops_beet_import_with_one_line_before_any_file(tiny_model, album,
                                                                      tmp_path):
    """beets' own "configuration error" line and exit 1, and nothing imported."""
    beets = Beets(tmp_path, album, {"model": str(tiny_model), "colour": "red"})
    error = beets.run("import", "-A", "-q", str(beets.music), check=1).stderr.strip()
    assert error.startswith("configuration error: musictag: unknown option colour"), error
    assert "\n" not in error
    assert beets.stored() == {}


def section(options: dict) -> confuse.ConfigView:
    """A ``musictag:`` section as beets gives the plugin one: these options over the defaults."""
    view = confuse.RootView([confuse.ConfigSource({"musictag": options})])["musictag"]
    view.add(DEFAULTS)
    return view


@pytest.mark.parametrize(("options", "message"), [
    ({"top_k": 0}, "musictag.top_k: must be a whole number of at least 1 or null, not 0"),
    ({"top_k": True}, "musictag.top_k: must be a whole number"),
    ({"batch_size": 2.5}, "musictag.batch_size: must be a whole number of at least 1, not 2.5"),
    ({"threshold": 2}, "musictag.threshold: must be a number from 0 to 1, not 2"),
    ({"thresholds": {"tag01": float("nan")}}, "musictag.thresholds.tag01: must be a number"),
    ({"thresholds": {"piano": 0.3}}, "musictag.thresholds: the model has no tag 'piano'"),
    ({"threshold": 0.2, "thresholds": {"tag01": 0.3}},
     "musictag: give threshold or thresholds, not both"),
    ({"backend": "gpu"}, "musictag.backend: must be one of"),
    ({"auto": "maybe"}, "musictag.auto: must be a bool"),
    ({"model": "no-such-model"}, "musictag.model: unknown model 'no-such-model'; known models: "),
])
def test_bad_values_are_config_errors_naming_the_option(tiny_model, options, message):
    with pytest.raises(confuse.ConfigError) as error:
        read_settings(section({"model": str(tiny_model), **options}))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_settings_from_a_good_section(tiny_model):
    """Whole-number thresholds become floats (``TagResult.select`` takes a float or a mapping);
    ``-m`` replaces the configured model, and a wrong one is a one-line UserError."""
    settings = read_settings(section({"model": str(tiny_model), "threshold": 1, "top_k": None}))
    assert (settings.card.name, settings.thresholds, settings.top_k) == ("tiny-test", 1.0, None)
    assert type(settings.thresholds) is float
    assert read_settings(section({}), model=str(tiny_model)).card.name == "tiny-test"
    with pytest.raises(UserError, match="^musictag --model: unknown model 'nope'"):
        read_settings(section({}), model="nope")
