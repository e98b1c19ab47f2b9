"""beets plugin ``musictag``: tags a beets library by listening to the audio.

Enabled with ``plugins: musictag``. ``beet musictag [QUERY]`` tags the matching items and, with
``auto: yes`` (the default, as lastgenre has it), ``beet import`` tags what it imports. Stored per
item: the selected tags as the flexible attribute ``musictag`` (best first, joined with "; ", the
separator beets shows its own list fields with), the card's name as ``musictag_model`` and, with
``genre: yes``, the same tags as beets' ``genres`` list, which ``beet write`` puts in the files.
Items the configured model has tagged are skipped (``-f`` re-tags them), so an interrupted run
resumes by being run again.

A thin adapter: the ``musictag:`` section is checked here, the audio goes through one
:class:`musictag.Tagger` and its :meth:`~musictag.Tagger.tag_many` (decoding overlaps
inference, consecutive files share batches), and results are stored through beets' models and
reported through its logger. The package is a PEP 420 namespace (no ``__init__.py``), as beets'
own ``beetsplug`` is, so that this module joins it wherever each is installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import confuse
from beets import ui
from beets.dbcore.types import DelimitedString
from beets.plugins import BeetsPlugin

from musictag import Tagger, load_tagger
from musictag.audio import AudioError
from musictag.errors import MusictagError
from musictag.inference import BACKENDS
from musictag.registry import DEFAULT_MODEL, ModelCard, get_card

if TYPE_CHECKING:  # beets.importer alone takes 0.3 s to import, on every beet command
    import optparse

    from beets.importer import ImportSession, ImportTask
    from beets.library import Item, Library

#: The ``musictag:`` options and their defaults; any other key is a configuration error.
DEFAULTS: dict[str, Any] = {
    "model": None,  # a card name or a card .json file; None is musictag's default model
    "top_k": 5,
    "threshold": None,
    "thresholds": None,  # {tag: threshold}
    "auto": True,
    "genre": False,
    "batch_size": 16,
    "backend": "auto",
}
#: What beets joins a list field's values with when it shows them ("rock; pop").
SEPARATOR = DelimitedString.fmt_delimiter
TAG_FIELD, MODEL_FIELD = "musictag", "musictag_model"
#: Errors of musictag that name a model it cannot find or open, each one line.
MODEL_ERRORS = (MusictagError, OSError)


@dataclass(frozen=True)
class Settings:
    """The ``musictag:`` section, checked: the model a run tags with and what it stores."""

    model: str  # the card's name or .json file, as load_tagger takes it
    card: ModelCard
    top_k: int | None
    thresholds: float | dict[str, float] | None
    auto: bool
    genre: bool
    batch_size: int
    backend: str


def read_settings(config: confuse.ConfigView, *, model: str | None = None) -> Settings:
    """The section as :class:`Settings`, or :class:`confuse.ConfigError` naming the key at fault,
    which beets prints as one line ("configuration error: musictag.top_k: ...").

    ``model`` (the command's ``-m``) replaces the configured one; a wrong one is a
    :class:`beets.ui.UserError`. Only the card is read, not the weights, so that a bad name fails
    before any file is touched and a run over an already tagged library loads no model.
    """
    unknown = sorted(set(config.keys()) - set(DEFAULTS))
    if unknown:
        raise confuse.ConfigValueError(f"{config.name}: unknown option {', '.join(unknown)}; "
                                       f"the options are {', '.join(DEFAULTS)}")
    reference, card = _card(config["model"], override=model)
    return Settings(model=reference, card=card, top_k=_count(config["top_k"], optional=True),
                    thresholds=_limits(config, card.labels), auto=config["auto"].get(bool),
                    genre=config["genre"].get(bool), batch_size=_count(config["batch_size"]),
                    backend=config["backend"].as_choice(BACKENDS))


def _card(view: confuse.ConfigView, *, override: str | None) -> tuple[str, ModelCard]:
    """The model reference and its card. A configured .json path is taken relative to the
    config file's folder, as beets takes every path in its configuration."""
    reference = override
    if reference is None:
        reference = view.get(confuse.Optional(str)) or DEFAULT_MODEL
        if reference.endswith(".json"):
            reference = view.as_filename()
    try:
        return reference, get_card(reference)
    except MODEL_ERRORS as error:
        if override is not None:
            raise ui.UserError(f"musictag --model: {error}") from None
        raise confuse.ConfigValueError(f"{view.name}: {error}") from None


def _count(view: confuse.ConfigView, *, optional: bool = False) -> int | None:
    """A whole number of at least 1 (or null when ``optional``); confuse's Integer would take
    ``yes`` as 1 and round 2.5."""
    value = view.get()
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise confuse.ConfigValueError(f"{view.name}: must be a whole number of at least 1"
                                       f"{' or null' if optional else ''}, not {value!r}")
    return value


def _fraction(view: confuse.ConfigView) -> float | None:
    """A threshold: a number from 0 to 1, or null. NaN fails the range test: as a threshold it
    would pass no score, a tag that silently never appears."""
    value = view.get()
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise confuse.ConfigValueError(f"{view.name}: must be a number from 0 to 1, not "
                                       f"{value!r}")
    return float(value)


def _limits(config: confuse.ConfigView,
            labels: list[str]) -> float | dict[str, float] | None:
    """``threshold`` or ``thresholds`` (not both); a threshold for a tag the model lacks is an
    error, since a misspelt tag would never be chosen."""
    threshold = _fraction(config["threshold"])
    mapping = config["thresholds"].get(confuse.Optional(dict))
    if mapping is None:
        return threshold
    if threshold is not None:
        raise confuse.ConfigValueError(f"{config.name}: give threshold or thresholds, not both")
    unknown = sorted(set(map(str, mapping)) - set(labels))
    if unknown:
        raise confuse.ConfigValueError(f"{config['thresholds'].name}: the model has no tag "
                                       f"{', '.join(map(repr, unknown))} (its tags: "
                                       f"{', '.join(labels)})")
    return {str(tag): _fraction(config["thresholds"][tag]) for tag in mapping}


class MusictagPlugin(BeetsPlugin):
    """``beet musictag`` and the import stage (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.config.add(DEFAULTS)
        # The stage is always registered and reads ``auto`` once an import begins: an option
        # read here would turn a bad value into beets' "error loading plugin" traceback.
        self.import_stages = [self.imported]
        self.register_listener("import_begin", self.import_begin)
        self._import_settings: Settings | None = None
        self._tagger: Tagger | None = None

    def commands(self) -> list[ui.Subcommand]:
        command = ui.Subcommand("musictag", help="tag items by listening to their audio")
        command.parser.add_option("-f", "--force", action="store_true", default=False,
                                  help="re-tag items that the model has already tagged")
        command.parser.add_option("-p", "--pretend", action="store_true", default=False,
                                  help="show the tags, store nothing")
        command.parser.add_option("-m", "--model", metavar="NAME|CARD.json",
                                  help="the model (default: the musictag.model option)")
        command.func = self.command
        return [command]

    def command(self, lib: Library, opts: optparse.Values, args: list[str]) -> None:
        """``beet musictag [-f] [-p] [-m MODEL] [QUERY]``; exits 1 (one line) when files failed,
        each of them already logged, so that a script sees an incomplete run."""
        settings = read_settings(self.config, model=opts.model)
        failed, tried = self.tag_items(lib.items(args), settings, force=opts.force,
                                       pretend=opts.pretend,
                                       write=settings.genre and ui.should_write())
        if failed:
            raise ui.UserError(f"musictag: {failed} of {tried} files could not be tagged")

    def import_begin(self, session: ImportSession) -> None:
        """Check the section and load the model before the importer touches a file: a bad
        option or a missing model stops ``beet import`` with one line, not halfway."""
        self._import_settings = read_settings(self.config)
        if self._import_settings.auto:
            self._load(self._import_settings)

    def imported(self, session: ImportSession, task: ImportTask) -> None:
        """The import stage: tag a task's items before beets writes and moves their files, so
        that ``import.write`` writes ``genres`` too. A file that fails is logged, not fatal."""
        settings = self._import_settings
        if settings is not None and settings.auto:
            self.tag_items(task.imported_items(), settings, force=False, pretend=False,
                           write=False)

    def tag_items(self, items: Iterable[Item], settings: Settings, *, force: bool,
                  pretend: bool, write: bool) -> tuple[int, int]:
        """Tag the items that ``settings``' model has not tagged (all of them with ``force``),
        show each change as beets' own commands do and, unless ``pretend``, store it (and write
        the files' tags when ``write``). Returns (files failed, files tried)."""
        name = settings.card.name
        items = list(items)
        todo = [item for item in items if force or item.get(MODEL_FIELD) != name]
        if len(todo) < len(items):
            self._log.info("skipping {} items already tagged by {} "
                           "(beet musictag -f re-tags them)", len(items) - len(todo), name)
        if not todo:
            return 0, 0
        tagger = self._load(settings)
        failed = 0
        paths = [os.fsdecode(item.path) for item in todo]
        for item, (_, result) in zip(todo, tagger.tag_many(paths), strict=True):
            if isinstance(result, AudioError):
                failed += 1
                self._log.error("{}", result)
                continue
            tags = [tag for tag, _ in result.select(top_k=settings.top_k,
                                                    thresholds=settings.thresholds)]
            item[TAG_FIELD] = SEPARATOR.join(tags)
            item[MODEL_FIELD] = name
            fields = [TAG_FIELD, MODEL_FIELD]
            if settings.genre:
                item.genres = tags
                fields.append("genres")
            ui.show_model_changes(item, fields=fields)
            if not pretend:
                item.try_sync(write=write, move=False)
        return failed, len(todo)

    def _load(self, settings: Settings) -> Tagger:
        """The model, loaded on first use and kept for the rest of the run (every import task
        of a ``beet import`` uses it); a model that cannot be opened is one line."""
        if self._tagger is None:
            try:
                self._tagger = load_tagger(settings.model, batch_size=settings.batch_size,
                                           backend=settings.backend)
            except MODEL_ERRORS as error:
                raise ui.UserError(f"musictag: model {settings.card.name!r}: {error}") from None
        return self._tagger
