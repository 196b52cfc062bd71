"""The base every dropout module shares: a validated rate, a generator, a repr."""

from __future__ import annotations

import torch
from torch import nn

from dropkit._checks import check_probability


class RateMixin:
    """A drop probability ``p`` validated on every assignment.

    Schedules and ``set_rate`` assign ``module.p`` between steps; a bad value raises
    there, naming the module, instead of deep inside the next forward pass.
    ``stochastic = True`` tells Monte Carlo tools this module samples in training mode.
    """

    stochastic = True
    # True where one draw serves the whole batch (weights, vocabulary rows): Monte Carlo
    # samples then cannot come from replicating the input along the batch.
    shares_noise_across_batch = False
    _allow_one = True  # False where the noise is undefined at p = 1
    _p: float

    @property
    def p(self) -> float:
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        self._p = check_probability(type(self).__name__, value, allow_one=self._allow_one)


class RateModule(RateMixin, nn.Module):
    """The base of dropkit's dropout modules: a validated rate, a generator, a repr."""

    def __init__(self, p: float, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.p = p
        self.generator = generator

    def extra_repr(self) -> str:
        return f"p={self.p}"


class InplaceRateModule(RateModule):
    """A rate module that can overwrite its input, as torch's ``_DropoutNd``."""

    def __init__(
        self, p: float = 0.5, inplace: bool = False, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(p, generator=generator)
        self.inplace = inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
