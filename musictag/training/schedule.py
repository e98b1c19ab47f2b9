"""The paper's learning-rate schedule: divide on a validation-loss plateau, stop after the last one.

"The learning rate was initially set to 0.01 and decreased by a factor of 5 when the validation loss
did not decrease more than 3 epochs. A total decrease of 4 times" (section 4.2): after ``patience``
epochs without a new best validation loss the rate is divided by ``factor``; once it has been
divided ``max_decays`` times, the next plateau ends the run. Its state is plain numbers, so it
travels in checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class PlateauSchedule:
    lr: float
    factor: float = 5.0
    patience: int = 3
    max_decays: int = 4
    best_loss: float = math.inf
    bad_epochs: int = 0
    decays: int = 0
    finished: bool = False

    def step(self, val_loss: float) -> str:
        """Record an epoch's validation loss; returns improved, waiting, decayed or finished."""
        if val_loss < self.best_loss:
            self.best_loss, self.bad_epochs = val_loss, 0
            return "improved"
        self.bad_epochs += 1
        if self.bad_epochs < self.patience:
            return "waiting"
        if self.decays >= self.max_decays:
            self.finished = True
            return "finished"
        self.lr /= self.factor
        self.decays += 1
        self.bad_epochs = 0
        return "decayed"

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
