"""Early stopping on validation loss, as a small state machine the engine saves and resumes.

Prechelt 1998 ("Early Stopping - But When?"); Lightning's ``EarlyStopping`` callback
(``patience``, ``min_delta``, state saved with the checkpoint). The engine keeps the best
epoch's weights and restores them at the end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from dropkit._checks import check_int
from dropkit.errors import UsageError

__all__ = ["EarlyStopping"]


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved by more than ``min_delta`` for
    ``patience`` epochs in a row.

    Example:
        >>> es = EarlyStopping(patience=2)
        >>> [es.update(epoch, loss) for epoch, loss in enumerate([3.0, 2.0, 2.5, 2.1, 1.0], 1)]
        [False, False, False, True, True]
        >>> es.best_epoch, es.stopped_epoch
        (2, 4)
    """

    patience: int
    min_delta: float = 0.0
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_epoch: int | None = None

    def __post_init__(self) -> None:
        check_int("EarlyStopping", self.patience, "patience", 1)
        if not (isinstance(self.min_delta, (int, float)) and self.min_delta >= 0):
            raise UsageError(f"EarlyStopping: expected `min_delta` to be a number >= 0, got "
                             f"min_delta={self.min_delta!r}")

    @property
    def stopped(self) -> bool:
        return self.stopped_epoch is not None

    def update(self, epoch: int, loss: float) -> bool:
        """Record ``epoch``'s validation loss; return whether training should stop now.

        An improvement (``loss < best_loss - min_delta``) makes ``epoch`` the best one
        and resets the count; a NaN loss never improves. Once stopped, stays stopped.
        """
        if self.stopped:
            return True
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.bad_epochs = float(loss), epoch, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                self.stopped_epoch = epoch
        return self.stopped

    def improved_at(self, epoch: int) -> bool:
        """Whether ``epoch`` is the best so far (its weights are the ones to keep)."""
        return self.best_epoch == epoch

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> EarlyStopping:
        return cls(**dict(state))
