"""``musictag train``: the paper's training recipe over the model family of :mod:`musictag.nets`.

:mod:`.config` holds the recipe and its overrides, :mod:`.schedule` the plateau schedule,
:mod:`.batches` the per-epoch segment plan, :mod:`.model` the network and its card,
:mod:`.distributed` the torchrun process group and :mod:`.run` the resumable loop.
"""

from .config import TrainConfig
from .run import TrainingInterrupted, TrainingRun

__all__ = ["TrainConfig", "TrainingInterrupted", "TrainingRun"]
