"""Dropout-rate schedules: pure, validated functions of the step, each a callable ``step -> p``.

Papers:
    Morerio et al. 2017, "Curriculum Dropout" (``curriculum``).
    Liu et al. 2023, "Dropout Reduces Underfitting" (``early``, ``late``).
    Huang et al. 2016, "Deep Networks with Stochastic Depth" (``stochastic_depth_rates``).
A step is whatever the caller counts (iterations or epochs). Each schedule is a frozen
dataclass: it has a readable ``repr``, pickles, and holds no state; the state (the step)
lives in :class:`dropkit.DropoutScheduler`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from dropkit._checks import check_nonnegative, check_positive_int, check_probability

__all__ = [
    "Schedule",
    "constant",
    "linear",
    "cosine",
    "early",
    "late",
    "curriculum",
    "stochastic_depth_rates",
]


def _step(name: str, step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"{name}: expected a step that is an int >= 0, got step={step!r}")
    return int(step)


def _nonnegative_int(fn: str, value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{fn}: expected `{name}` to be an int >= 0, got {name}={value!r}")
    return int(value)


class Schedule:
    """A rate as a function of the step: ``schedule(step) -> p``."""

    def __call__(self, step: int) -> float:
        return self.rate(_step(type(self).__name__, step))

    def rate(self, step: int) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    p: float

    def rate(self, step: int) -> float:
        return self.p


@dataclass(frozen=True)
class Linear(Schedule):
    start: float
    end: float
    steps: int

    def rate(self, step: int) -> float:
        t = min(step, self.steps) / self.steps
        return self.start + (self.end - self.start) * t


@dataclass(frozen=True)
class Cosine(Schedule):
    start: float
    end: float
    steps: int

    def rate(self, step: int) -> float:
        t = min(step, self.steps) / self.steps
        return self.end + (self.start - self.end) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass(frozen=True)
class Early(Schedule):
    p: float
    cutoff: int
    ramp: str

    def rate(self, step: int) -> float:
        if step >= self.cutoff:
            return 0.0
        return self.p if self.ramp == "constant" else self.p * (1 - step / self.cutoff)


@dataclass(frozen=True)
class Late(Schedule):
    p: float
    start: int

    def rate(self, step: int) -> float:
        return self.p if step >= self.start else 0.0


@dataclass(frozen=True)
class Curriculum(Schedule):
    p: float
    gamma: float

    def rate(self, step: int) -> float:
        return self.p * (1 - math.exp(-self.gamma * step))


def constant(p: float) -> Schedule:
    """``p`` at every step."""
    return Constant(check_probability("constant", p))


def linear(start: float, end: float, steps: int) -> Schedule:
    """From ``start`` at step 0 to ``end`` at ``steps`` in a straight line; ``end`` after."""
    return Linear(
        check_probability("linear", start, name="start"),
        check_probability("linear", end, name="end"),
        check_positive_int("linear", steps, "steps"),
    )


def cosine(start: float, end: float, steps: int) -> Schedule:
    """From ``start`` to ``end`` along half a cosine over ``steps``; ``end`` after."""
    return Cosine(
        check_probability("cosine", start, name="start"),
        check_probability("cosine", end, name="end"),
        check_positive_int("cosine", steps, "steps"),
    )


def early(p: float, cutoff: int, *, ramp: str = "constant") -> Schedule:
    """Early dropout (Liu et al. 2023): ``p`` until ``cutoff``, then 0.

    With ``ramp="linear"`` the rate falls linearly from ``p`` at step 0 to 0 at ``cutoff``.
    Dropout early in training reduces the variance of mini-batch gradients and helps
    models that underfit.
    """
    if ramp not in ("constant", "linear"):
        raise ValueError(f"early: expected `ramp` to be 'constant' or 'linear', got ramp={ramp!r}")
    return Early(
        check_probability("early", p), check_positive_int("early", cutoff, "cutoff"), ramp
    )


def late(p: float, start: int) -> Schedule:
    """Late dropout (Liu et al. 2023): 0 until ``start``, then ``p``, against overfitting."""
    return Late(check_probability("late", p), _nonnegative_int("late", start, "start"))


def curriculum(p: float, gamma: float) -> Schedule:
    """Curriculum dropout (Morerio et al. 2017): ``p * (1 - exp(-gamma * step))``.

    Starts at 0 and rises towards ``p``: easy (noise-free) first, harder later.
    """
    gamma = check_nonnegative("curriculum", gamma, "gamma")
    if gamma == 0:
        raise ValueError("curriculum: expected `gamma` > 0 (0 keeps the rate at 0), got gamma=0")
    return Curriculum(check_probability("curriculum", p), gamma)


def stochastic_depth_rates(n_blocks: int, p_last: float) -> list[float]:
    """Huang et al. 2016's linear decay rule: block ``l`` of ``L`` drops with ``l / L * p_last``.

    Blocks are numbered from 1, so the first block drops least and the last ``p_last``.
    """
    n = check_positive_int("stochastic_depth_rates", n_blocks, "n_blocks")
    p_last = check_probability("stochastic_depth_rates", p_last, name="p_last")
    return [p_last * (i + 1) / n for i in range(n)]
