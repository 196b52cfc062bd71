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
from collections.abc import Callable
from dataclasses import dataclass

from dropkit._checks import check_int, check_nonnegative, check_probability
from dropkit.errors import UsageError

__all__ = [
    "Schedule",
    "constant",
    "linear",
    "cosine",
    "early",
    "late",
    "curriculum",
    "stochastic_depth_rates",
    "parse_schedule",
    "SCHEDULES",
]


class Schedule:
    """A rate as a function of the step: ``schedule(step) -> p``.

    Each schedule checks its fields when it is built (``__post_init__``), whether by its
    factory (:func:`linear`) or its class (``Linear(0.1, 0.2, 0)`` raises, rather than
    divide by zero at the first step).
    """

    def __call__(self, step: int) -> float:
        return self.rate(check_int(type(self).__name__, step, "step"))

    def rate(self, step: int) -> float:
        raise NotImplementedError

    @property
    def spec(self) -> str:
        """The schedule as :func:`parse_schedule` reads it: ``parse_schedule(s.spec) == s``
        (a training framework stores it as text in its checkpoints)."""
        raise NotImplementedError


def _spec(name: str, *numbers: float) -> str:
    return f"{name}:" + ",".join(repr(n) for n in numbers)


@dataclass(frozen=True)
class Constant(Schedule):
    p: float

    def __post_init__(self) -> None:
        check_probability("constant", self.p)

    def rate(self, step: int) -> float:
        return self.p

    @property
    def spec(self) -> str:
        return _spec("constant", self.p)


@dataclass(frozen=True)
class Linear(Schedule):
    start: float
    end: float
    steps: int

    def __post_init__(self) -> None:
        _check_ramp(type(self).__name__.lower(), self.start, self.end, self.steps)

    def rate(self, step: int) -> float:
        t = min(step, self.steps) / self.steps
        return self.start + (self.end - self.start) * t

    @property
    def spec(self) -> str:
        return _spec("linear", self.start, self.end, self.steps)


@dataclass(frozen=True)
class Cosine(Schedule):
    start: float
    end: float
    steps: int

    def __post_init__(self) -> None:
        _check_ramp(type(self).__name__.lower(), self.start, self.end, self.steps)

    def rate(self, step: int) -> float:
        t = min(step, self.steps) / self.steps
        return self.end + (self.start - self.end) * 0.5 * (1 + math.cos(math.pi * t))

    @property
    def spec(self) -> str:
        return _spec("cosine", self.start, self.end, self.steps)


def _check_ramp(fn: str, start: float, end: float, steps: int) -> None:
    check_probability(fn, start, name="start")
    check_probability(fn, end, name="end")
    check_int(fn, steps, "steps", 1)


@dataclass(frozen=True)
class Early(Schedule):
    p: float
    cutoff: int
    ramp: str = "constant"

    def __post_init__(self) -> None:
        if self.ramp not in ("constant", "linear"):
            raise UsageError(f"early: expected `ramp` to be 'constant' or 'linear', "
                             f"got ramp={self.ramp!r}")
        check_probability("early", self.p)
        check_int("early", self.cutoff, "cutoff", 1)

    def rate(self, step: int) -> float:
        if step >= self.cutoff:
            return 0.0
        return self.p if self.ramp == "constant" else self.p * (1 - step / self.cutoff)

    @property
    def spec(self) -> str:
        return _spec("early" if self.ramp == "constant" else "early-linear", self.p, self.cutoff)


@dataclass(frozen=True)
class Late(Schedule):
    p: float
    start: int

    def __post_init__(self) -> None:
        check_probability("late", self.p)
        check_int("late", self.start, "start")

    def rate(self, step: int) -> float:
        return self.p if step >= self.start else 0.0

    @property
    def spec(self) -> str:
        return _spec("late", self.p, self.start)


@dataclass(frozen=True)
class Curriculum(Schedule):
    p: float
    gamma: float

    def __post_init__(self) -> None:
        check_probability("curriculum", self.p)
        if check_nonnegative("curriculum", self.gamma, "gamma") == 0:
            raise UsageError("curriculum: expected `gamma` > 0 (0 keeps the rate at 0), "
                             "got gamma=0")

    def rate(self, step: int) -> float:
        return self.p * (1 - math.exp(-self.gamma * step))

    @property
    def spec(self) -> str:
        return _spec("curriculum", self.p, self.gamma)


def constant(p: float) -> Schedule:
    """``p`` at every step."""
    return Constant(p)


def linear(start: float, end: float, steps: int) -> Schedule:
    """From ``start`` at step 0 to ``end`` at ``steps`` in a straight line; ``end`` after."""
    return Linear(start, end, steps)


def cosine(start: float, end: float, steps: int) -> Schedule:
    """From ``start`` to ``end`` along half a cosine over ``steps``; ``end`` after."""
    return Cosine(start, end, steps)


def early(p: float, cutoff: int, *, ramp: str = "constant") -> Schedule:
    """Early dropout (Liu et al. 2023): ``p`` until ``cutoff``, then 0.

    With ``ramp="linear"`` the rate falls linearly from ``p`` at step 0 to 0 at ``cutoff``.
    Dropout early in training reduces the variance of mini-batch gradients and helps
    models that underfit.
    """
    return Early(p, cutoff, ramp)


def late(p: float, start: int) -> Schedule:
    """Late dropout (Liu et al. 2023): 0 until ``start``, then ``p``, against overfitting."""
    return Late(p, start)


def curriculum(p: float, gamma: float) -> Schedule:
    """Curriculum dropout (Morerio et al. 2017): ``p * (1 - exp(-gamma * step))``.

    Starts at 0 and rises towards ``p``: easy (noise-free) first, harder later.
    """
    return Curriculum(p, gamma)


def _steps(value: float) -> int:
    """A count of steps written in a spec: a whole, finite number (2.9 is not 2)."""
    if not math.isfinite(value) or value != int(value):
        raise UsageError(f"expected a whole number of steps, got {value:g}")
    return int(value)


#: Schedules by name, as :func:`parse_schedule` and the command line read them:
#: each takes its numbers in the factory's order.
SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": lambda p: constant(p),
    "linear": lambda a, b, n: linear(a, b, _steps(n)),
    "cosine": lambda a, b, n: cosine(a, b, _steps(n)),
    "early": lambda p, c: early(p, _steps(c)),
    "early-linear": lambda p, c: early(p, _steps(c), ramp="linear"),
    "late": lambda p, s: late(p, _steps(s)),
    "curriculum": lambda p, g: curriculum(p, g),
}


def parse_schedule(spec: str) -> Schedule:
    """``"NAME:ARG,ARG,..."`` as a schedule, e.g. ``"early:0.5,20"``, ``"linear:0.5,0,30"``.

    Names: the keys of :data:`SCHEDULES`. A bad spec raises
    :class:`~dropkit.errors.UsageError` naming the argument ``schedule``.

    >>> parse_schedule("early:0.5,20")
    Early(p=0.5, cutoff=20, ramp='constant')
    """
    name, _, args = spec.partition(":")
    if name not in SCHEDULES:
        raise UsageError(f"parse_schedule: expected `schedule` as NAME:ARGS with NAME one of "
                         f"{', '.join(SCHEDULES)}, got {spec!r}", "schedule")
    try:
        values = [float(a) for a in args.split(",")] if args else []
        return SCHEDULES[name](*values)
    except (TypeError, ValueError) as error:
        raise UsageError(f"parse_schedule: `schedule` {spec!r}: {error}", "schedule") from None


def stochastic_depth_rates(n_blocks: int, p_last: float) -> list[float]:
    """Huang et al. 2016's linear decay rule: block ``l`` of ``L`` drops with ``l / L * p_last``.

    Blocks are numbered from 1, so the first block drops least and the last ``p_last``.
    """
    n = check_int("stochastic_depth_rates", n_blocks, "n_blocks", 1)
    p_last = check_probability("stochastic_depth_rates", p_last, name="p_last")
    return [p_last * (i + 1) / n for i in range(n)]
