"""The statistics behind the reproductions' verdicts: standard errors from the spread
over seeds and from the binomial noise of a test set, the two-standard-error rule, and
the four verdicts with the power behind them (:func:`judge`, :func:`power`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from dropkit.app.experiments.report import mean_spread
from dropkit.app.experiments.reproduce.registry import Verdict
from dropkit.errors import UsageError

__all__ = ["RANGE_95", "N_TEST", "se_diff", "pm", "binom_se", "directional", "Effect",
           "Finding", "judge", "power", "seeds_for", "Z_TWO_SIDED", "Z_POWER"]


def se_diff(a: Sequence[float], b: Sequence[float]) -> float:
    """Standard error of mean(a) - mean(b) from the seeds' spread."""
    return math.sqrt(mean_spread(a)[1] ** 2 / len(a) + mean_spread(b)[1] ** 2 / len(b))


def pm(values: Sequence[float], percent: bool = True) -> str:
    m, s = mean_spread(values)
    return f"{100 * m:.2f} ± {100 * s:.2f}%" if percent else f"{m:.4f} ± {s:.4f}"





# 95th percentile of the range of k independent standard normal draws (the studentized
# range with infinite degrees of freedom): a spread below it is what noise alone gives.
RANGE_95 = {2: 2.77, 3: 3.31, 4: 3.63, 5: 3.86, 6: 4.03}
N_TEST = 1000  # MNIST-5k's test split


def binom_se(error: float, seeds: int, n: int = N_TEST) -> float:
    """Standard error of a mean test error over seeds, each on n test examples."""
    return math.sqrt(max(error * (1 - error), 1e-12) / (n * seeds))


def directional(better: str, worse: str, res, key: str = "test_error") -> tuple[bool, float]:
    """Is ``better`` lower than ``worse`` by more than 2 standard errors of the difference?"""
    diff = mean_spread(res[worse][key])[0] - mean_spread(res[better][key])[0]
    return diff > 2 * se_diff(res[worse][key], res[better][key]), diff


#: The two-sided 5% normal quantile (a 95% interval is the estimate +- 1.96 se) and the
#: quantile of 80% power: an effect of (Z_TWO_SIDED + Z_POWER) se is detected 4 times in 5.
Z_TWO_SIDED = NormalDist().inv_cdf(0.975)
Z_POWER = NormalDist().inv_cdf(0.80)


@dataclass(frozen=True)
class Effect:
    """A claim's primary effect, signed so that the published direction is positive (a
    drop in test error, a gain in log-likelihood), with its standard error over
    ``seeds`` seeds; ``published``: the published size in the same units, where the
    paper gives one."""

    estimate: float
    se: float
    seeds: int
    published: float | None = None

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% interval of the effect."""
        half = Z_TWO_SIDED * self.se
        return self.estimate - half, self.estimate + half


@dataclass(frozen=True)
class Finding:
    """The verdict on an effect and the power statement that goes with it."""

    verdict: Verdict
    power: str


def judge(effect: Effect, *, matches_published: bool = False) -> Finding:
    """The four verdicts, one rule for every claim:

    - *reproduced*: the claim's own comparison with the published number holds
      (``matches_published``) and the effect's interval lies on the published side;
    - *direction reproduced*: the interval lies on the published side of 0;
    - *contradicted*: the interval lies on the other side of 0 (it excludes the
      published direction);
    - *inconclusive*: the interval covers both no effect and the published direction.
    """
    low, high = effect.interval
    if low > 0:
        verdict = Verdict.REPRODUCED if matches_published else Verdict.DIRECTION
    elif high < 0:
        verdict = Verdict.CONTRADICTED
    else:
        verdict = Verdict.INCONCLUSIVE
    return Finding(verdict, power(effect))


def seeds_for(effect: Effect, size: float) -> int:
    """Seeds that would detect an effect of ``size`` with 80% power at the 5% level, the
    standard error shrinking as one over the root of the seeds."""
    if size <= 0:
        raise UsageError(f"seeds_for: expected a size > 0, got {size!r}")
    mde = (Z_TWO_SIDED + Z_POWER) * effect.se
    return max(effect.seeds, math.ceil(effect.seeds * (mde / size) ** 2))


def power(effect: Effect) -> str:
    """The smallest effect this run detects with 80% power, and the seeds the published
    effect (or, without one, the one measured) would need."""
    mde = (Z_TWO_SIDED + Z_POWER) * effect.se
    text = (f"the smallest effect {effect.seeds} seeds detect with 80% power is "
            f"{mde:.3g}")
    target = effect.published if effect.published else abs(effect.estimate)
    if target > 0:
        label = "the published effect" if effect.published else "the measured size"
        text += f"; {label} ({target:.3g}) needs {seeds_for(effect, target)} seeds"
    return text

