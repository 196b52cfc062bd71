"""Locked (variational) dropout module; see :mod:`dropkit.functional.locked_dropout`."""

from __future__ import annotations

import torch
from torch import Tensor

from dropkit.functional.locked_dropout import locked_dropout
from dropkit.nn._base import RateModule

__all__ = ["LockedDropout"]


class LockedDropout(RateModule):
    """One mask per sequence, shared over time (AWD-LSTM).

    See :func:`dropkit.functional.locked_dropout`.

    Args:
        p: probability of dropping a feature. Default: 0.5.
        batch_first: inputs are ``(N, T, H)``. Default: False (``(T, N, H)``).
        generator: keyword-only source of randomness.
    """

    def __init__(
        self,
        p: float = 0.5,
        batch_first: bool = False,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, generator=generator)
        self.batch_first = batch_first

    @property
    def time_first(self) -> bool:
        """Its input's dim 0 is time (Monte Carlo sampling cannot replicate along it)."""
        return not self.batch_first

    def extra_repr(self) -> str:
        return f"p={self.p}, batch_first={self.batch_first}"

    def forward(self, input: Tensor) -> Tensor:
        return locked_dropout(
            input, self.p, self.training, batch_first=self.batch_first, generator=self.generator
        )
