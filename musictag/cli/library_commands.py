"""``musictag merge-shards``, ``embed`` and ``similar``: a library's shard logs joined, its
embeddings stored, and tracks found by similarity."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..audio import AudioError
from ..errors import MusictagError
from ..fileio import atomic_open, json_dumps
from ..library.embed import EmbeddingIndex, embed_files
from ..library.run import check_output
from ..library.shard import count_failures, merge_shards
from ..scale import embed_outcomes
from .app import (
    EXIT_SOME_FAILED,
    BatchSizeOption,
    DeviceOption,
    ExactPrecisionOption,
    ModelOption,
    QuietOption,
    VerboseOption,
    WeightsOption,
    app,
    check_exact_or_bf16,
    fail,
    fail_error,
    progress_bar,
    setup_logging,
    stderr,
)
from .engine import (
    ActorsOption,
    CpusPerActorOption,
    Engine,
    EngineOption,
    RayAddressOption,
    checked,
)
from .library import fail_run
from .loading import collect_paths, open_card, open_tagger

MergeOutputOption = Annotated[Path, typer.Option(
    "--output", "-o", help="The merged JSONL file (written atomically).")]


@app.command("merge-shards")
def merge_shards_command(
    logs: Annotated[list[Path], typer.Argument(
        help="Result logs of `musictag tag --output` (one per shard), in the order written.")],
    output: MergeOutputOption,
) -> None:
    """Join shard logs into one JSONL file: one record per file, sorted by path.

    Logs of different models are refused (exit 2): their scores cannot be compared.
    """
    for log_path in logs:
        if not log_path.is_file():
            fail(f"{log_path}: no such file")
    try:
        check_output(output)
        records = merge_shards(logs)
    except MusictagError as error:
        fail_run(error, output=output)
    with atomic_open(output, "w", encoding="utf-8") as stream:
        for record in records:
            stream.write(json_dumps(record) + "\n")
    failures = count_failures(records)
    stderr.print(f"{output}: {len(records)} files from {len(logs)} logs"
                 + (f", {failures} of them failed" if failures else ""),
                 markup=False, highlight=False)


@app.command()
def embed(
    paths: Annotated[list[str], typer.Argument(
        help="Audio files or folders (searched recursively); - reads paths from stdin.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="The .npz index to write (atomically).")],
    per_window: Annotated[bool, typer.Option(
        "--per-window", help="Also store every window's vector, not only each file's mean.")]
        = False,
    model: ModelOption = None,
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    precision: ExactPrecisionOption = "fp32",
    batch_size: BatchSizeOption = 16,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    actors: ActorsOption = None,
    cpus_per_actor: CpusPerActorOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Store each file's penultimate-layer embedding (mean over its windows) for `similar`.

    Paths are stored absolute, so `similar` finds a file of the index from any folder.
    """
    setup_logging(verbose)
    chosen = Engine.choose(engine, address=ray_address, actors=actors,
                           cpus_per_actor=cpus_per_actor)
    files, failed = collect_paths(paths)  # unlisted folders count as failures
    if not files:
        fail("no audio files found in the given paths")
    check_exact_or_bf16(precision)
    load = {"device": device, "precision": precision, "batch_size": batch_size}
    if chosen.is_ray:  # the actors load the model; here its card is only read
        card = open_card(model, weights)
        chosen.connect(verbose=verbose)
        outcomes = checked(embed_outcomes(files, model=model, weights=weights,
                                          **chosen.options(), **load))
    else:
        tagger = open_tagger(model, weights, **load)
        card = tagger.card
        outcomes = embed_files(tagger, files)

    def vectors() -> Iterator[tuple[str, Any]]:
        nonlocal failed
        with progress_bar(quiet) as progress:
            task = progress.add_task("embedding", total=len(files))
            for path, outcome in outcomes:
                progress.update(task, description=path.name[:40])
                if isinstance(outcome, AudioError):
                    failed += 1
                    progress.console.print(f"musictag: {outcome}", markup=False,
                                           highlight=False, soft_wrap=True)
                else:
                    yield os.path.abspath(path), outcome
                progress.advance(task)

    try:
        index = EmbeddingIndex.from_windows(vectors(), model=card.name, per_window=per_window)
    except MusictagError as error:
        fail_error(error)
    index.save(output)
    stderr.print(f"{output}: {len(index.paths)} files x {index.embeddings.shape[1]} values "
                 f"({card.name})", markup=False, highlight=False)
    if failed:
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command()
def similar(
    query: Annotated[str, typer.Argument(
        help="An audio file: one in the index, or any other (embedded with the index's model).")],
    index_path: Annotated[Path, typer.Option(
        "--index", "-i", help="An index written by `musictag embed`.")],
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="How many tracks to list.")]
        = 10,
    fmt: Annotated[str | None, typer.Option(
        "--format", "-f", help="table, jsonl or tsv (default: table on a terminal, "
                               "jsonl when piped).")] = None,
    model: ModelOption = None,
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    verbose: VerboseOption = False,
) -> None:
    """List the tracks most similar to QUERY by cosine similarity of their embeddings."""
    setup_logging(verbose)
    fmt = fmt or ("table" if sys.stdout.isatty() else "jsonl")
    if fmt not in ("table", "jsonl", "tsv"):
        fail(f"unknown format {fmt!r}; choose table, jsonl or tsv")
    try:
        index = EmbeddingIndex.load(index_path)
    except MusictagError as error:
        fail_error(error)
    query = os.path.abspath(query)  # the index holds absolute paths
    vector = index.vector(query)
    if vector is None:
        tagger = open_tagger(model or (None if weights else index.model), weights, device=device)
        if tagger.card.name != index.model:
            fail(f"{index_path} was made with {index.model}, not {tagger.card.name}")
        try:
            vector = tagger.embed(query).mean(axis=0)
        except AudioError as error:
            fail_error(error, code=EXIT_SOME_FAILED)
    ranked = index.nearest(vector, k=k, exclude=query)
    if fmt == "table":
        table = Table(show_header=True, header_style="bold")
        for column, justify in (("rank", "right"), ("file", "left"), ("similarity", "right")):
            table.add_column(column, justify=justify, overflow="fold")
        for rank, (path, score) in enumerate(ranked, start=1):
            table.add_row(str(rank), path, f"{score:.4f}")
        Console(file=sys.stdout).print(table)
    else:
        for rank, (path, score) in enumerate(ranked, start=1):
            typer.echo(json.dumps({"rank": rank, "path": path, "similarity": round(score, 6)},
                                  ensure_ascii=False) if fmt == "jsonl"
                       else f"{rank}\t{path}\t{score:.6f}")

