"""Gaussian noise modules: thin wrappers of :mod:`dropkit.functional.gaussian`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dropkit._checks import check_nonnegative
from dropkit._fx import TracedAsLeaf
from dropkit.functional import gaussian_dropout, gaussian_noise
from dropkit.nn._base import RateModule

__all__ = ["GaussianDropout", "GaussianNoise"]


class GaussianDropout(RateModule):
    """Multiplicative N(1, p / (1 - p)) noise; see :func:`dropkit.functional.gaussian_dropout`.

    Args:
        p: the equivalent drop probability, in [0, 1). Default: 0.5.
        generator: keyword-only source of randomness.
    """

    _allow_one = False

    def __init__(self, p: float = 0.5, *, generator: torch.Generator | None = None) -> None:
        super().__init__(p, generator=generator)

    def forward(self, input: Tensor) -> Tensor:
        return gaussian_dropout(input, self.p, self.training, generator=self.generator)


class GaussianNoise(TracedAsLeaf, nn.Module):
    """Additive N(0, std^2) noise in training; see :func:`dropkit.functional.gaussian_noise`.

    Args:
        std: standard deviation, finite and >= 0.
        generator: keyword-only source of randomness.
    """

    # A dropout site (dropkit.tools.sites) whose strength is a standard deviation, not a drop
    # probability: set_rate with one float leaves it alone.
    rate_attribute = "std"
    rate_is_probability = False

    def __init__(self, std: float, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.std = std
        self.generator = generator

    @property
    def std(self) -> float:
        return self._std

    @std.setter
    def std(self, value: float) -> None:
        self._std = check_nonnegative("GaussianNoise", value, "std")

    def extra_repr(self) -> str:
        return f"std={self.std}"

    def forward(self, input: Tensor) -> Tensor:
        return gaussian_noise(input, self.std, self.training, generator=self.generator)
