"""The distillation run: resumable training of a student on teacher-labelled augmented audio.

Distillation takes many hours, so a run is a :class:`~musictag.runfolder.RunFolder` that can be
continued at any time: ``config.json`` (fixed at the first start), ``checkpoint.pt`` (written every
few minutes and on Ctrl-C), ``bank.npz`` (the teacher-label bank: each labelled segment's seed and
scores, so that a segment is labelled once and trained on several times), ``log.csv`` (one line
per logged step), ``validation.jsonl`` (one line per validation; beside the held-out agreement,
the same measure on a fixed sample of training tracks, whose gap to it tells whether the
student needs more steps or more kinds of music) and the student card + weights of the latest
validation, ready for ``musictag tag --model RUN/student.json``. The student is evaluated and
exported from an exponential moving average of its weights, which tracks a good model at any
point of a long learning-rate schedule.

Student and teachers run on the configured ``device`` (the CPU by default, which is what a run
whose ``config.json`` predates the setting ran on); the label bank, the segment sampler and its
generator stay on the CPU, so a seed rebuilds the same segment wherever the networks run.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import stop_signals
from ..device import autocast, autocast_dtype, resolve_device
from ..errors import RunError
from ..nets import build_model, use_bf16_form
from ..nets.registry import config_to_dict
from ..nets.samplecnn import SampleCNNConfig
from ..registry import ModelCard, get_card
from ..runfolder import RunFolder
from ..training.model import load_init_weights
from .augment import AugmentConfig, SegmentSampler
from .bank import LabelBank, bank_fingerprint
from .corpus import CorpusTrack, open_corpus
from .teachers import TeacherEnsemble, centre
from .validate import ValidationSet, agreement, build_validation_set, track_means

BANK_FILE = "bank.npz"

#: Called with an event name ("cache", "step", "validation") and its numbers.
EventCallback = Callable[[str, dict[str, Any]], None]


@dataclass
class DistillConfig:
    audio_dir: str
    teachers: list[tuple[str, float]]
    held_out_groups: list[str]
    cache_dir: str = ""
    group_weights: dict[str, float] = field(default_factory=dict)
    name: str = "samplecnn-distilled"
    student_arch: dict[str, Any] = field(
        default_factory=lambda: config_to_dict(SampleCNNConfig()))
    sample_rate_hz: int = 22050
    window_samples: int = 59049
    batch_size: int = 16
    labels_per_step: int = 4
    total_steps: int = 12000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 300
    ema_decay: float = 0.999
    precision: str = "bf16"
    #: auto, cpu or cuda; absent from runs started before it existed, which ran on the CPU.
    device: str = "cpu"
    seed: int = 0
    min_duration_s: float = 4.0
    validate_every: int = 250
    checkpoint_every_s: float = 300.0
    validation_windows_per_track: int = 8
    fit_check_tracks: int = 64
    init: str = ""
    temperature: float = 1.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillConfig:
        """The stored dict back as a config; fields it lacks take their defaults."""
        data = dict(data)
        data["augment"] = AugmentConfig.from_dict(data.get("augment", {}))
        data["teachers"] = [tuple(t) for t in data["teachers"]]
        return cls(**data)


def soft_target_loss(logits: torch.Tensor, targets: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """BCE against the teachers' probabilities, both softened by ``temperature`` in logit space.

    At 1 this is plain BCE, whose gradient ``sigmoid(s) - p`` all but vanishes where teacher and
    student both say "unlikely": the tail of the 50 tags, which is exactly where the ranking
    of a tag across tracks (and so its ROC-AUC) is decided. A higher temperature keeps the
    optimum at the teacher's logits but lets those differences pull; the ``T**2`` factor keeps
    the gradient's size comparable across temperatures (Hinton et al., 2015).
    """
    if temperature == 1.0:
        return F.binary_cross_entropy_with_logits(logits, targets)
    softened = torch.sigmoid(torch.logit(targets, eps=1e-4) / temperature)
    return temperature ** 2 * F.binary_cross_entropy_with_logits(logits / temperature, softened)


def learning_rate(config: DistillConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to zero at ``total_steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) /
                   max(1, config.total_steps - config.warmup_steps))
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


class DistillRun:
    """A distillation run in ``run_dir``: a new one from ``config``, or the stored one resumed
    (``config`` None, or ``resume`` with a ``config`` that must equal the stored one)."""

    def __init__(self, run_dir: str | Path, config: DistillConfig | None = None, *,
                 resume: bool = False, on_event: EventCallback | None = None):
        self.run_dir = Path(run_dir)
        self.folder = RunFolder(self.run_dir)
        self.on_event = on_event or (lambda name, values: None)
        if config is not None:  # an unusable device is refused before config.json is written
            autocast_dtype(config.precision, resolve_device(config.device))
        self.config = self.folder.open_config(
            DistillConfig.from_dict, None if config is None else lambda _: config,
            resume=resume or config is None)
        self.device = resolve_device(self.config.device)
        self.dtype = autocast_dtype(self.config.precision, self.device)

    # --- setup -------------------------------------------------------------------------------

    def _prepare(self) -> None:
        config = self.config
        self.corpus = open_corpus(config.audio_dir, config.cache_dir or self.run_dir / "cache",
                                  sample_rate_hz=config.sample_rate_hz,
                                  min_duration_s=config.min_duration_s,
                                  on_progress=lambda done, total: self.on_event(
                                      "cache", {"done": done, "total": total}))
        self.train_tracks, self.held_tracks = self.corpus.split(set(config.held_out_groups))
        if not self.train_tracks or not self.held_tracks:
            raise RunError("both the training groups and the held-out groups need tracks")
        unknown = set(config.group_weights) - {t.group for t in self.train_tracks}
        if unknown:
            raise RunError(f"weighted group(s) not among the training groups: "
                           f"{', '.join(sorted(unknown))}")
        torch.manual_seed(config.seed)
        self.generator = np.random.default_rng(config.seed)
        self.ensemble = TeacherEnsemble(config.teachers, device=str(self.device),
                                        student_window_s=config.window_samples /
                                        config.sample_rate_hz)
        self.span = int(np.ceil(self.ensemble.span_s * config.sample_rate_hz))
        self.sampler = SegmentSampler(self.corpus, self.train_tracks,
                                      sample_rate_hz=config.sample_rate_hz,
                                      config=config.augment,
                                      group_weights=config.group_weights)
        self.bank = LabelBank(len(self.ensemble.labels), bank_fingerprint({
            "tracks": [[t.path, t.n_samples] for t in self.train_tracks],
            "augment": config.augment.fingerprint_dict(), "span": self.span,
            "group_weights": config.group_weights,
            "sample_rate_hz": config.sample_rate_hz, "teachers": self.ensemble.describe()}))
        self.student = build_model(config.student_arch)
        if config.init:
            load_init_weights(self.student, get_card(config.init), self.ensemble.labels)
        if self.dtype == torch.bfloat16:
            use_bf16_form(self.student)
        self.student.to(self.device)
        self.ema = copy.deepcopy(self.student).eval()
        self.optimizer = torch.optim.AdamW(self.student.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.validation = self._scored_windows("validation_set.npz", self.held_tracks)
        self.fit_check = self._scored_windows("fit_check_set.npz", self._fit_check_tracks()) \
            if config.fit_check_tracks else None

    def _scored_windows(self, name: str, tracks: list[CorpusTrack]) -> ValidationSet:
        """Evenly spaced windows of ``tracks`` with the teachers' scores, labelled once per run."""
        path = self.run_dir / name
        if path.exists():
            return ValidationSet.load(path)
        windows = build_validation_set(
            self.corpus, tracks, self.ensemble, sample_rate_hz=self.config.sample_rate_hz,
            student_window=self.config.window_samples,
            windows_per_track=self.config.validation_windows_per_track)
        windows.save(path)
        return windows

    def _fit_check_tracks(self) -> list[CorpusTrack]:
        """Training tracks drawn as often as training draws them (by length, so songs rather
        than one-shot samples), with their own generator so that a resumed run's augmentations
        stay those of an uninterrupted one."""
        chooser = np.random.default_rng(self.config.seed + 1)
        count = min(self.config.fit_check_tracks, len(self.train_tracks))
        return [self.train_tracks[i] for i in sorted(chooser.choice(
            len(self.train_tracks), size=count, replace=False, p=self.sampler.probabilities))]

    # --- training ------------------------------------------------------------------------------

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``labels_per_step`` newly labelled segments (added to the bank), the rest of the
        batch drawn from the bank and rebuilt from their seeds."""
        config = self.config
        fresh = min(config.labels_per_step, config.batch_size)
        seeds = self.generator.integers(0, 2**62, size=fresh)
        segments = [self.sampler.draw(self.span, int(seed)) for seed in seeds]
        self.bank.add(seeds, self.ensemble.score(np.stack(segments),
                                                 sample_rate_hz=config.sample_rate_hz))
        reused = self.generator.integers(0, len(self.bank), size=config.batch_size - fresh)
        segments += [self.sampler.draw(self.span, int(self.bank.seeds[i])) for i in reused]
        rows = np.concatenate([np.arange(len(self.bank) - fresh, len(self.bank)), reused])
        inputs = np.stack([centre(s, config.window_samples) for s in segments])
        return torch.from_numpy(inputs), torch.from_numpy(self.bank.targets[rows])

    def _step(self, step: int) -> float:
        inputs, targets = self._batch()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, step)
        self.student.train()
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        with autocast(self.device, self.dtype):
            logits = self.student(inputs)
        loss = soft_target_loss(logits.float(), targets, self.config.temperature)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._update_ema(step)
        return loss.item()

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        """Average with a decay that grows to ``ema_decay``: a fixed 0.999 would still hold 20 %
        of the random initial weights after 1,600 steps, so short runs start the average late."""
        decay = min(self.config.ema_decay, (1.0 + step) / (10.0 + step))
        for averaged, current in zip(self.ema.state_dict().values(),
                                     self.student.state_dict().values(), strict=True):
            if averaged.dtype.is_floating_point:
                averaged.mul_(decay).add_(current, alpha=1.0 - decay)
            else:
                averaged.copy_(current)

    def _save(self, step: int, elapsed_s: float) -> None:
        """The bank first: a checkpoint never refers to entries that were not written."""
        self.bank.save(self.run_dir / BANK_FILE)
        self.folder.save_checkpoint(model=self.student, optimizer=self.optimizer,
                                    generator=self.generator,
                                    counters={"step": step, "elapsed_s": elapsed_s,
                                              "bank_size": len(self.bank)},
                                    extra={"ema": self.ema.state_dict()})

    def _restore(self) -> tuple[int, float]:
        state = self.folder.load_checkpoint(model=self.student, optimizer=self.optimizer,
                                            generator=self.generator)
        if state is None:
            return 0, 0.0
        self.ema.load_state_dict(state["extra"]["ema"])
        if state.get("bank_size"):
            self.bank = LabelBank.load(self.run_dir / BANK_FILE, n_labels=self.bank.n_labels,
                                       fingerprint=self.bank.fingerprint)
            self.bank.truncate(int(state["bank_size"]))
        return int(state["step"]), float(state["elapsed_s"])

    # --- validation and export -----------------------------------------------------------------

    @torch.no_grad()
    def _agreement(self, windows: ValidationSet) -> dict[str, Any]:
        inputs = torch.from_numpy(windows.inputs.astype(np.float32)).to(self.device)
        scores = np.concatenate([torch.sigmoid(self.ema(inputs[i:i + 32])).cpu().numpy()
                                 for i in range(0, len(inputs), 32)])
        owners = windows.track_of_window
        return agreement(track_means(scores, owners),
                         track_means(windows.teacher_scores, owners), self.ensemble.labels)

    def validate(self) -> dict[str, Any]:
        """The held-out agreement, with the training sample's summary as ``training_tracks``."""
        report = self._agreement(self.validation)
        if self.fit_check is not None:
            fit = self._agreement(self.fit_check)
            report["training_tracks"] = {key: fit[key] for key in
                                         ("macro_roc_auc", "mean_top5_overlap", "tracks")}
        return report

    def student_card(self, step: int, elapsed_s: float, report: dict[str, Any]) -> ModelCard:
        """The card of the student at ``step``, checked as ``tag`` will check it."""
        config = self.config
        return ModelCard.from_dict({
            "name": config.name,
            "description": f"{config.student_arch['name']} distilled from "
                           f"{', '.join(name for name, _ in config.teachers)} (musictag distill)",
            "arch": config.student_arch,
            "labels": self.ensemble.labels,
            "sample_rate_hz": config.sample_rate_hz,
            "window_samples": config.window_samples,
            "averaging": {"rule": "consecutive"},
            "weights": {"file": f"{config.name}.safetensors"},
            "training_data": "unlabelled audio labelled by teachers (knowledge distillation)",
            "source": "musictag distill",
            "licence": "MIT",
            "reported": {"distillation_agreement": {
                k: v for k, v in report.items() if k != "per_tag"}},
            "provenance": {
                "teachers": self.ensemble.describe(),
                "steps": step, "batch_size": config.batch_size,
                "training_time_s": round(elapsed_s),
                "precision": config.precision,
                "initialised_from": config.init or None,
                "temperature": config.temperature,
                "corpus_groups": self.corpus.describe(config.sample_rate_hz),
                "held_out_groups": config.held_out_groups,
            },
        })

    def export(self, step: int, elapsed_s: float, report: dict[str, Any]) -> Path:
        """The averaged student as ``NAME.json`` + ``NAME.safetensors``; the card's path."""
        return self.folder.export(self.student_card(step, elapsed_s, report),
                                  self.ema.state_dict())

    def train(self, *, max_steps: int | None = None, max_time_s: float | None = None) -> dict:
        """Train until ``total_steps`` (or a step/time budget for this call); returns the last
        validation report. Ctrl-C or SIGTERM ends the call after the current step with a
        checkpoint saved; a second one stops at once (the checkpoint of a few minutes ago
        remains)."""
        self._prepare()
        step, elapsed = self._restore()
        stop_at = self.config.total_steps if max_steps is None else min(
            self.config.total_steps, step + max_steps)
        started, last_save, losses = time.monotonic(), time.monotonic(), []
        report: dict[str, Any] = {}
        with stop_signals() as request:
            while step < stop_at and not request["stop"]:
                tick = time.monotonic()
                losses.append(self._step(step))
                step += 1
                elapsed += time.monotonic() - tick
                if step % 10 == 0 or step == stop_at:
                    row = {"step": step, "loss": round(float(np.mean(losses)), 5),
                           "lr": learning_rate(self.config, step - 1),
                           "seconds_per_step": round((time.monotonic() - tick), 3),
                           "elapsed_s": round(elapsed, 1)}
                    self.folder.append_row("log.csv", row)
                    self.on_event("step", row)
                    losses = []
                if step % self.config.validate_every == 0 or step == stop_at:
                    report = self.validate()
                    self._save(step, elapsed)
                    self.export(step, elapsed, report)
                    summary = {"step": step, "elapsed_s": round(elapsed),
                               **{k: v for k, v in report.items() if k != "per_tag"}}
                    self.folder.append_row("validation.jsonl",
                                           {**summary, "per_tag": report["per_tag"]})
                    self.on_event("validation", summary)
                    last_save = time.monotonic()
                elif time.monotonic() - last_save > self.config.checkpoint_every_s:
                    self._save(step, elapsed)
                    last_save = time.monotonic()
                if max_time_s is not None and time.monotonic() - started > max_time_s:
                    break
        self._save(step, elapsed)
        return report
