"""``musictag models``: the registry of model cards, and pulling or importing their weights."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from .. import hub
from ..registry import ModelCard, available_models, get_card
from .app import USER_ERRORS, QuietOption, app, fail_error, show_progress, stderr

models_app = typer.Typer(help="List, pull and import models.", invoke_without_command=True,
                         no_args_is_help=False)
app.add_typer(models_app, name="models")


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _licence_notices(cards: list[ModelCard]) -> list[tuple[list[str], str]]:
    """Each distinct notice once, with the models it covers, in first-seen order."""
    covered: dict[str, list[str]] = {}
    for card in cards:
        if card.licence_notice:
            covered.setdefault(card.licence_notice, []).append(card.name)
    return [(names, notice) for notice, names in covered.items()]


@models_app.callback()
def list_models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as JSON.")] = False,
) -> None:
    """List every known model: architecture, training data, tags, source, licence, score."""
    if ctx.invoked_subcommand is not None:
        return
    cards = available_models()
    if as_json:
        print(json.dumps([{**card.to_dict(), "available_offline": hub.is_available_offline(card)}
                          for card in cards], indent=2))
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("name", "architecture", "trained on", "tags", "source", "licence",
                   "ROC-AUC", "PR-AUC", "offline"):
        table.add_column(column, overflow="fold")
    for card in cards:
        table.add_row(card.name, card.arch["name"], card.training_data, str(len(card.labels)),
                      card.source, card.licence, _score(card.reported.get("roc_auc")),
                      _score(card.reported.get("pr_auc")),
                      "yes" if hub.is_available_offline(card) else "no")
    console = Console()
    console.print(table)
    for names, notice in _licence_notices(cards):
        console.print(f"\nLicence notice for {', '.join(names)}:", style="bold", markup=False,
                      highlight=False, soft_wrap=True)
        console.print(notice, markup=False, highlight=False, soft_wrap=True)  # verbatim


@contextlib.contextmanager
def _download_progress(name: str, quiet: bool) -> Iterator[hub.DownloadProgress | None]:
    if not show_progress(quiet):
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task(name, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


@models_app.command("pull")
def pull_models(
    names: Annotated[list[str], typer.Argument(help="Model card names (see `musictag models`).")],
    force: Annotated[bool, typer.Option("--force", help="Convert again even if cached.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Download, verify and convert models into the cache; prints each converted file."""
    for name in names:
        try:
            card = get_card(name)
            with _download_progress(card.name, quiet) as on_progress:
                path = hub.pull(card, on_progress=on_progress, force=force)
        except USER_ERRORS as error:
            fail_error(error)
        print(f"{card.name}\t{path}")


@models_app.command("import")
def import_model(
    source: Annotated[Path, typer.Argument(
        help="A local upstream checkpoint: a .pth, a wheel, or an unpacked folder.")],
    arch: Annotated[str | None, typer.Option(
        "--arch", help="Upstream architecture name (fcn, crnn, musicnn, sample, se...).")] = None,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="Dataset the model was trained on (mtat, msd, jamendo...).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="The model card to import for, instead of --arch/--dataset.")] = None,
) -> None:
    """Convert a local copy of an upstream checkpoint into the cache, as `pull` would.

    Without options, the file's checksum picks the card(s) it belongs to.
    """
    try:
        cards = hub.cards_for_import(source, available_models(), model=model, arch=arch,
                                     dataset=dataset)
    except USER_ERRORS as error:
        fail_error(error, flags="--model, --arch, --dataset")
    try:
        written = [(card, hub.import_file(card, source)) for card in cards]
    except USER_ERRORS as error:
        fail_error(error)
    for card, path in written:
        print(f"{card.name}\t{path}")
