"""``musictag models``: the registry of model cards, what each is and whether it runs offline."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..hub import is_available_offline
from ..registry import available_models
from .app import app

models_app = typer.Typer(help="List, pull and import models.", invoke_without_command=True,
                         no_args_is_help=False)
app.add_typer(models_app, name="models")


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


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
        print(json.dumps([{**card.to_dict(), "available_offline": is_available_offline(card)}
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
                      "yes" if is_available_offline(card) else "no")
    Console().print(table)
