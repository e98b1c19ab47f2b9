"""``musictag distill``: train a SampleCNN student from teacher taggers on unlabelled audio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from ..errors import MusictagError, RunError
from ..registry import DEFAULT_MODEL, card_reference, get_card
from .app import (
    USER_ERRORS,
    QuietOption,
    VerboseOption,
    app,
    fail,
    fail_error,
    progress_bar,
    setup_logging,
    stderr,
)


def _auc_text(auc: float | None) -> str:
    """A macro ROC-AUC is undefined when no tag has both positive and negative tracks."""
    return "undefined" if auc is None else f"{auc:.4f}"


def _with_interval(value: float | None, bounds: list[float] | None, digits: int) -> str:
    """A figure on a few dozen tracks is printed with the interval that says how far it holds."""
    if value is None:
        return "undefined"
    text = f"{value:.{digits}f}"
    return f"{text} (95% {bounds[0]:.{digits}f} to {bounds[1]:.{digits}f})" if bounds else text


def _fit_summary(values: dict[str, Any]) -> str:
    """The training-track agreement, printed beside the held-out one it is compared with."""
    fit = values.get("training_tracks")
    if not fit:
        return ""
    return f"; training tracks {_auc_text(fit['macro_roc_auc'])}, {fit['mean_top5_overlap']:.2f}/5"


@app.command()
def distill(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="Folder of the run (created, or "
                                                            "continued with --resume).")],
    teacher: Annotated[list[str] | None, typer.Option(
        "--teacher", help="Teacher card, optionally weighted: NAME or NAME:WEIGHT. Repeat.")
    ] = None,
    audio_dir: Annotated[Path | None, typer.Option(
        "--audio-dir", help="Unlabelled audio, searched recursively; its first folder level "
                            "names the groups.")] = None,
    hold_out: Annotated[list[str] | None, typer.Option(
        "--hold-out", help="Group (first-level folder) kept for validation. Repeat.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(
        "--cache-dir", help="Where decoded audio is cached (default RUN_DIR/cache).")] = None,
    group_weight: Annotated[list[str] | None, typer.Option(
        "--group-weight", help="GROUP:WEIGHT: draw that training group's tracks WEIGHT times "
                               "as often (default 1). Repeat.")] = None,
    student: Annotated[str, typer.Option(
        "--student", help="Card (name or .json) whose architecture, sample rate and window the "
                          "student takes; its weights are not used.")] = DEFAULT_MODEL,
    init: Annotated[str | None, typer.Option(
        "--init", help="Start the student from this card's weights (name or .json): its "
                       "architecture replaces --student's.")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Name of the student card [default: samplecnn-distilled].")] = None,
    steps: Annotated[int | None, typer.Option(
        "--steps", min=1, help="Total optimiser steps of the run (sets the LR schedule) "
                               "[default: 12000].")] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", "-b", min=1, help="[default: 16]")] = None,
    labels_per_step: Annotated[int | None, typer.Option(
        "--labels-per-step", min=1, help="Segments the teachers label per step; the rest of "
                                         "each batch is drawn again from the label bank "
                                         "(--batch-size: every segment new) [default: 4].")
    ] = None,
    lr: Annotated[float | None, typer.Option(
        "--lr", help="Peak AdamW learning rate [default: 0.001].")] = None,
    warmup_steps: Annotated[int | None, typer.Option(
        "--warmup-steps", min=0, help="Steps of linear learning-rate warm-up [default: 300].")
    ] = None,
    temperature: Annotated[float | None, typer.Option(
        "--temperature", min=1.0, help="Soften teacher and student logits by this much in the "
                                       "loss (1: plain BCE on the teachers' scores) "
                                       "[default: 1.0].")] = None,
    precision: Annotated[str | None, typer.Option(
        "--precision", help="bf16 or fp32 [default: bf16].")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="[default: 0]")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in RUN_DIR.")] = False,
    max_steps: Annotated[int | None, typer.Option(
        "--max-steps", min=1, help="Stop this call after this many steps (resumable).")] = None,
    max_minutes: Annotated[float | None, typer.Option(
        "--max-minutes", help="Stop this call after this long (resumable).")] = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Distill teacher taggers into a student model; prints the student card's path.

    Options left out take :class:`~musictag.distill.run.DistillConfig`'s defaults (the help
    repeats them; tests/test_distill.py checks that they agree)."""
    from ..distill.augment import parse_group_weight
    from ..distill.run import DistillConfig, DistillRun
    from ..distill.teachers import parse_teacher_spec

    setup_logging(verbose)
    if precision is not None and precision not in ("bf16", "fp32"):
        fail(f"unknown precision {precision!r} (bf16 or fp32)")
    if resume:
        config = None
    else:
        if not teacher or audio_dir is None or not hold_out:
            fail("a new run needs --teacher, --audio-dir and --hold-out (or --resume)")
        if (run_dir / "config.json").exists():
            fail(f"{run_dir} already holds a run; add --resume to continue it")
        try:
            teachers = [parse_teacher_spec(spec) for spec in teacher]
            group_weights = dict(parse_group_weight(spec) for spec in group_weight or [])
            student_card = get_card(init or student)
        except MusictagError as error:
            fail_error(error)
        given = {"name": name, "total_steps": steps, "batch_size": batch_size,
                 "labels_per_step": labels_per_step, "lr": lr, "precision": precision,
                 "seed": seed, "warmup_steps": warmup_steps, "temperature": temperature}
        config = DistillConfig(audio_dir=str(audio_dir.resolve()), teachers=teachers,
                               held_out_groups=list(hold_out),
                               group_weights=group_weights,
                               student_arch=student_card.arch,
                               sample_rate_hz=student_card.sample_rate_hz,
                               window_samples=student_card.window_samples,
                               cache_dir=str(cache_dir.resolve()) if cache_dir else "",
                               init=card_reference(init) if init else "",
                               **{key: value for key, value in given.items()
                                  if value is not None})
    progress = progress_bar(quiet, transient=False)
    tasks: dict[str, Any] = {}

    def on_event(event: str, values: dict[str, Any]) -> None:
        if event == "cache":
            if "cache" not in tasks:
                tasks["cache"] = progress.add_task("decoding corpus", total=values["total"])
            progress.update(tasks["cache"], completed=values["done"])
        elif event == "step":
            if "steps" not in tasks:
                tasks["steps"] = progress.add_task("distilling", total=run.config.total_steps)
            progress.update(tasks["steps"], completed=values["step"],
                            description=f"distilling (loss {values['loss']:.4f})")
        elif event == "validation":
            roc = _with_interval(values["macro_roc_auc"], values["macro_roc_auc_ci95"], 4)
            overlap = _with_interval(values["mean_top5_overlap"],
                                     values["mean_top5_overlap_ci95"], 2)
            progress.console.print(
                f"step {values['step']}: held-out ROC-AUC {roc}, top-5 overlap {overlap} "
                f"over {values['tracks']} tracks ({values['elapsed_s']} s trained)"
                f"{_fit_summary(values)}", highlight=False)

    try:
        run = DistillRun(run_dir, config, on_event=on_event)
        with progress:
            run.train(max_steps=max_steps,
                      max_time_s=None if max_minutes is None else max_minutes * 60)
    except USER_ERRORS as error:
        fail_error(error)
    print(run.run_dir / f"{run.config.name}.json")


@app.command("compare-teachers")
def compare_teachers(
    teacher: Annotated[list[str], typer.Option("--teacher", help="Teacher card. Repeat.")],
    audio_dir: Annotated[Path, typer.Option("--audio-dir", help="Audio, grouped by first-level "
                                                                "folder.")],
    cache_dir: Annotated[Path, typer.Option("--cache-dir", help="Decoded-audio cache folder.")],
    expect: Annotated[Path | None, typer.Option(
        "--expect", help="JSON {group: [tags the group plainly holds]} for plausibility.")] = None,
    per_group: Annotated[int, typer.Option("--per-group", min=1)] = 6,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the JSON report "
                                                                       "here.")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Measure teachers' agreement with each other and with what the audio plainly holds."""
    import json

    from ..distill.agreement import (
        excerpt,
        pairwise_agreement,
        plausibility,
        sample_tracks,
        track_scores,
    )
    from ..distill.corpus import Corpus, build_cache
    from ..fileio import atomic_open
    from ..inference import load_tagger

    setup_logging(verbose)
    rate = 22050
    try:
        expected = json.loads(expect.read_text()) if expect else {}
        tracks = build_cache(audio_dir, cache_dir, sample_rate_hz=rate, min_duration_s=4.0)
        corpus = Corpus(cache_dir, tracks)
        chosen = sample_tracks(tracks, per_group)
        taggers = {name: load_tagger(name, device="cpu") for name in teacher}
    except USER_ERRORS as error:
        fail_error(error)
    labels = next(iter(taggers.values())).labels
    excerpts = [excerpt(corpus, track, sample_rate_hz=rate) for track in chosen]
    groups = [track.group for track in chosen]
    scores = {}
    with stderr.status("scoring excerpts") as status:
        for name, tagger in taggers.items():
            status.update(f"scoring {len(chosen)} excerpts with {name}")
            scores[name] = track_scores(tagger, excerpts, sample_rate_hz=rate, labels=labels)
    report = {
        "tracks": len(chosen),
        "groups": sorted(set(groups)),
        "agreement": pairwise_agreement(scores),
        "plausibility": {name: plausibility(s, groups, expected, labels)
                         for name, s in scores.items()} if expected else {},
        "top5_by_group": {
            name: {group: [labels[i] for i in np.argsort(-s[np.array(groups) == group]
                                                         .mean(axis=0))[:5]]
                   for group in sorted(set(groups))}
            for name, s in scores.items()},
    }
    text = json.dumps(report, indent=2)
    if output:
        with atomic_open(output) as handle:
            handle.write(text + "\n")
    print(text)


def _trained_on(card: Any, groups: set[str]) -> list[str]:
    """Evaluated groups a distilled card's provenance says it trained on (so not held out)."""
    provenance = card.provenance or {}
    trained = set(provenance.get("corpus_groups", {})) - set(
        provenance.get("held_out_groups", []))
    return sorted(trained & groups)


@app.command("agreement")
def agreement_command(
    teacher: Annotated[list[str], typer.Option(
        "--teacher", help="Teacher card, optionally weighted: NAME or NAME:WEIGHT. Repeat.")],
    audio_dir: Annotated[Path, typer.Option(
        "--audio-dir", help="Audio to compare on, searched recursively; its first folder level "
                            "names the groups.")],
    cache_dir: Annotated[Path, typer.Option(
        "--cache-dir", help="Decoded-audio cache folder; the teachers' labels are kept there "
                            "too.")],
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="Student card (name or .json). Repeat to compare: each later one "
                              "is paired against the first.")] = None,
    group: Annotated[list[str] | None, typer.Option(
        "--group", help="Only this group (first-level folder). Repeat; default all.")] = None,
    windows_per_track: Annotated[int, typer.Option(
        "--windows-per-track", min=1, help="Evenly spaced windows scored per track.")] = 8,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the JSON report "
                                                                       "here.")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Students' agreement with teachers on any audio, with bootstrap intervals; prints JSON."""
    import json

    from ..distill.corpus import Corpus, build_cache
    from ..distill.teachers import TeacherEnsemble, parse_teacher_spec
    from ..distill.validate import (
        agreement,
        cached_validation_set,
        paired_difference,
        tagger_track_scores,
        track_means,
    )
    from ..fileio import atomic_open
    from ..inference import load_tagger

    setup_logging(verbose)
    names = model or [DEFAULT_MODEL]
    try:
        taggers = {name: load_tagger(name, device="cpu", backend="torch") for name in names}
        first = next(iter(taggers.values())).card
        for name, tagger in taggers.items():
            if (tagger.card.sample_rate_hz, tagger.card.window_samples) != (
                    first.sample_rate_hz, first.window_samples):
                raise RunError(f"model {name!r} hears {tagger.card.window_samples} samples "
                               f"at {tagger.card.sample_rate_hz} Hz, unlike {names[0]!r}: "
                               "compare models of one rate and window")
        rate, window = first.sample_rate_hz, first.window_samples
        ensemble = TeacherEnsemble([parse_teacher_spec(spec) for spec in teacher],
                                   labels=first.labels, student_window_s=window / rate)
        with stderr.status(f"decoding {audio_dir}"):
            tracks = build_cache(audio_dir, cache_dir, sample_rate_hz=rate, min_duration_s=4.0)
        corpus = Corpus(cache_dir, tracks)
        if group:
            _, tracks = corpus.split(set(group))
        if not tracks:
            raise RunError(f"{audio_dir}: no tracks of at least 4 s in any group folder")
        with stderr.status(f"labelling {len(tracks)} tracks with the teachers"):
            windows = cached_validation_set(corpus, tracks, ensemble, sample_rate_hz=rate,
                                            student_window=window,
                                            windows_per_track=windows_per_track,
                                            cache_dir=cache_dir)
        teacher_scores = track_means(windows.teacher_scores, windows.track_of_window)
        with stderr.status("scoring the students"):
            scores = {name: tagger_track_scores(tagger, windows, ensemble.labels)
                      for name, tagger in taggers.items()}
    except USER_ERRORS as error:
        fail_error(error)
    groups = {track.group for track in tracks}
    report: dict[str, Any] = {
        "tracks": len(tracks), "windows_per_track": windows_per_track,
        "groups": Corpus(cache_dir, tracks).describe(rate),
        "teachers": ensemble.describe(), "models": {}, "paired_with_first": {}}
    for name, tagger in taggers.items():
        result = agreement(scores[name], teacher_scores, ensemble.labels)
        seen = _trained_on(tagger.card, groups)
        if seen:
            stderr.print(f"warning: {name} trained on {', '.join(seen)}: not held out for it",
                         highlight=False)
        report["models"][name] = {**result, "trained_on_evaluated_groups": seen}
        roc = _with_interval(result["macro_roc_auc"], result["macro_roc_auc_ci95"], 4)
        overlap = _with_interval(result["mean_top5_overlap"], result["mean_top5_overlap_ci95"], 2)
        stderr.print(f"{name}: ROC-AUC {roc}, top-5 overlap {overlap} over {len(tracks)} tracks",
                     highlight=False)
    for name in names[1:]:
        difference = paired_difference(scores[names[0]], scores[name], teacher_scores)
        report["paired_with_first"][name] = difference
        roc, overlap = difference["macro_roc_auc"], difference["mean_top5_overlap"]
        stderr.print(f"{name} minus {names[0]}: ROC-AUC "
                     f"{_with_interval(roc['difference'], roc['ci95'], 4)}, top-5 overlap "
                     f"{_with_interval(overlap['difference'], overlap['ci95'], 2)}",
                     highlight=False)
    text = json.dumps(report, indent=2)
    if output:
        with atomic_open(output) as handle:
            handle.write(text + "\n")
    print(text)
