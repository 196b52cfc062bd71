"""The statistics behind the reproductions' verdicts: standard errors from the spread
over seeds and from the binomial noise of a test set, the two-standard-error rule, and
the four verdicts with the power behind them (:func:`judge`, :func:`power`)."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from torch import Tensor

from dropkit.app.experiments.report import mean_spread
from dropkit.app.experiments.reproduce.registry import Verdict
from dropkit.errors import UsageError

__all__ = ["RANGE_95", "N_TEST", "se_diff", "welch_df", "split_noise", "per_example",
           "test_set_effect", "pm", "binom_se",
           "seed_effect", "Effect", "Finding", "judge", "judge_level", "judge_parts", "combine",
           "power", "seeds_for", "SEVERITY", "Z_TWO_SIDED", "Z_POWER"]


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


def split_noise(scores: Tensor) -> tuple[float, float]:
    """The standard error of the mean over examples of ``scores`` (seeds x examples)
    averaged over seeds, and the part of it more seeds would not shrink.

    An example's seed-averaged score varies over examples by the between-example variance
    plus the within-example variance over seeds divided by the seeds; the mean
    within-example variance (unbiased, over seeds) estimates the latter, so the former is
    the rest (floored at 0). One seed cannot tell them apart: all of it counts as fixed.
    """
    seeds, n = scores.shape
    total = scores.mean(0).var().item() if n > 1 else 0.0
    within = scores.var(0).mean().item() if seeds > 1 else 0.0
    return math.sqrt(total / n), math.sqrt(max(total - within / seeds, 0.0) / n)


def per_example(d: Tensor) -> tuple[float, float]:
    """Mean of per-example differences ``d`` and its standard error over the examples."""
    return float(d.mean()), float(d.std() / math.sqrt(len(d)))


def test_set_effect(estimate: float, se: float, examples: int, seeds: int = 1,
                    points: bool = False) -> Effect:
    """An effect whose noise is all the ``examples`` test examples' (one shared run, or a
    binomial error): more seeds would not shrink it, more examples would. A rate
    (``points``) prints in points."""
    return Effect(estimate, se, seeds, fixed_se=se, examples=examples,
                  scale=100 if points else 1.0, unit=" points" if points else "")


def seed_effect(better: str, worse: str, res, key: str = "test_error",
                published: float | None = None, points: bool | None = None) -> Effect:
    """mean(worse) - mean(better) of ``res[label][key]`` over seeds: positive when
    ``better`` is lower, as published; its standard error and Welch's degrees of freedom
    from the seeds' spread. A rate (``points``; by default a key ending in "error")
    prints in points."""
    a, b = res[worse][key], res[better][key]
    percent = key.endswith("error") if points is None else points
    return Effect(mean_spread(a)[0] - mean_spread(b)[0], se_diff(a, b), min(len(a), len(b)),
                  published, df=welch_df(a, b), scale=100 if percent else 1.0,
                  unit=" points" if percent else "")


#: The two-sided 5% normal quantile (a 95% interval is the estimate +- 1.96 se) and the
#: quantile of 80% power: an effect of (Z_TWO_SIDED + Z_POWER) se is detected 4 times in 5.
Z_TWO_SIDED = NormalDist().inv_cdf(0.975)
Z_POWER = NormalDist().inv_cdf(0.80)
MAX_SEEDS = 10_000  # seeds_for searches no further


def _quantile(p: float, df: float | None) -> float:
    """The normal quantile, or Student's t with ``df`` degrees of freedom (a standard error
    from a few seeds' spread is itself uncertain: 3 seeds a side give t = 2.78, not 1.96)."""
    if df is None:
        return NormalDist().inv_cdf(p)
    from scipy.stats import t  # scikit-learn's dependency: the experiments extra

    return float(t.ppf(p, df))


def welch_df(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Welch-Satterthwaite degrees of freedom of mean(a) - mean(b); None when both spreads
    are 0 (the interval is then a point: no quantile enters)."""
    va, vb = mean_spread(a)[1] ** 2 / len(a), mean_spread(b)[1] ** 2 / len(b)
    denominator = (va ** 2 / (len(a) - 1) if len(a) > 1 else 0.0) + (
        vb ** 2 / (len(b) - 1) if len(b) > 1 else 0.0)
    return (va + vb) ** 2 / denominator if denominator > 0 else None


@dataclass(frozen=True)
class Effect:
    """A claim's primary effect, signed so that the published direction is positive (a
    drop in test error, a gain in log-likelihood), with its standard error over
    ``seeds`` seeds.

    ``published``: the published size in the same units, where the paper gives one.
    ``df``: the standard error's degrees of freedom when it comes from the seeds' spread
    (the interval then uses Student's t); None when it comes from many test examples.
    ``fixed_se``: the part of ``se`` that more seeds do not shrink (the noise of the
    ``examples`` test examples, in a difference paired over them). ``scale`` and
    ``unit`` print it (100 and " points" for an error rate); ``repeat`` names what
    ``seeds`` counts ("split" for a data set's random splits).
    """

    estimate: float
    se: float
    seeds: int
    published: float | None = None
    df: float | None = None
    fixed_se: float = 0.0
    examples: int | None = None
    scale: float = 1.0
    unit: str = ""
    repeat: str = "seed"

    def count(self, n: int | None = None) -> str:
        """``n`` (by default the effect's own) repeats in words: "3 seeds", "1 seed"."""
        n = self.seeds if n is None else n
        return f"{n} {self.repeat}{'s' if n != 1 else ''}"

    def _df_at(self, seeds: int) -> float | None:
        if self.df is None or self.seeds < 2:
            return self.df
        return self.df * (seeds - 1) / (self.seeds - 1)

    def _se_at(self, seeds: int) -> float:
        per_seed = max(self.se ** 2 - self.fixed_se ** 2, 0.0) * self.seeds
        return math.sqrt(self.fixed_se ** 2 + per_seed / seeds)

    def mde_at(self, seeds: int) -> float:
        """The smallest effect ``seeds`` seeds detect with 80% power at the 5% level."""
        df = self._df_at(seeds)
        return (_quantile(0.975, df) + _quantile(0.80, df)) * self._se_at(seeds)

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% interval of the effect."""
        half = _quantile(0.975, self.df) * self.se
        return self.estimate - half, self.estimate + half

    def _decimals(self) -> int:
        """Decimals that show two significant digits of the standard error."""
        se = abs(self.scale * self.se)
        return min(6, max(0, 1 - math.floor(math.log10(se)))) if se > 0 else 2

    def show(self, value: float, sign: bool = True) -> str:
        """``value`` in the effect's units, to the precision its noise allows."""
        text = f"{self.scale * value:{'+' if sign else ''}.{self._decimals()}f}"
        return text + self.unit

    def __str__(self) -> str:
        low, high = self.interval
        d = self._decimals()
        return (f"{self.show(self.estimate)} (95% interval {self.scale * low:+.{d}f} to "
                f"{self.scale * high:+.{d}f})")


@dataclass(frozen=True)
class Finding:
    """The verdict on an effect and the power statement that goes with it."""

    verdict: Verdict
    power: str


def judge(effect: Effect, *, matches_published: bool = False) -> Finding:
    """The four verdicts, one rule for every claim about an effect:

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


def judge_level(shortfall: Effect) -> Finding:
    """The rule for a claim about a level (a published number to reach): ``shortfall`` is
    dropkit's number minus the published one, signed so that better is positive, its
    standard error combining both. *Reproduced* when the interval reaches 0 or above (the
    published level is reached within noise), *contradicted* when it lies below 0."""
    verdict = Verdict.CONTRADICTED if shortfall.interval[1] < 0 else Verdict.REPRODUCED
    mde = shortfall.mde_at(shortfall.seeds)
    return Finding(verdict, f"a shortfall of {shortfall.show(mde, sign=False)} from the "
                            f"published level is detected with 80% power at "
                            f"{shortfall.count()}")


#: Most severe first: a claim of several parts takes its most severe part's verdict.
SEVERITY = (Verdict.CONTRADICTED, Verdict.INCONCLUSIVE, Verdict.DIRECTION, Verdict.REPRODUCED)


def combine(parts: dict[str, Finding]) -> Finding:
    """One verdict for a claim of several parts: the most severe part's, with its power
    statement (a claim holds only as far as its weakest part)."""
    if not parts:
        raise UsageError("combine: expected at least one part, got none")
    name, worst = min(parts.items(), key=lambda kv: SEVERITY.index(kv[1].verdict))
    return Finding(worst.verdict, worst.power if len(parts) == 1 else f"{name}: {worst.power}")


def judge_parts(parts: dict[str, Effect], *, levels: Collection[str] = (),
                matches_published: bool = False) -> tuple[Finding, str]:
    """Judge each part of a claim (:func:`judge`, or :func:`judge_level` for the parts
    named in ``levels``: "at least as good" parts), :func:`combine` them, and say each
    part's effect with its interval: the claim's verdict, power statement and why."""
    unknown = set(levels) - set(parts)
    if unknown:
        raise UsageError(f"judge_parts: expected levels among the parts, got {sorted(unknown)}")
    findings = {name: judge_level(e) if name in levels else
                judge(e, matches_published=matches_published) for name, e in parts.items()}
    return combine(findings), "; ".join(f"{name}: {e}" for name, e in parts.items())


def seeds_for(effect: Effect, size: float) -> int | None:
    """Seeds that would detect an effect of ``size`` with 80% power at the 5% level: the
    seed-borne part of the standard error shrinks as one over the root of the seeds, the
    test set's part (``fixed_se``) does not; None when no number of seeds reaches it."""
    if size <= 0:
        raise UsageError(f"seeds_for: expected a size > 0, got {size!r}")
    for seeds in range(max(effect.seeds, 2 if effect.df is not None else 1), MAX_SEEDS + 1):
        if effect.mde_at(seeds) <= size * (1 + 1e-12):  # rounding of the square root
            return max(seeds, effect.seeds)
    return None


def power(effect: Effect) -> str:
    """The smallest effect this run detects with 80% power, and the seeds the published
    effect (or, without one, the one measured) would need."""
    mde = effect.mde_at(effect.seeds)
    verb = "detect" if effect.seeds != 1 else "detects"
    text = (f"the smallest effect {effect.count()} {verb} with 80% power is "
            f"{effect.show(mde, sign=False)}")
    target = effect.published if effect.published else abs(effect.estimate)
    if target <= 0:
        return text
    label = "the published effect" if effect.published else "the measured size"
    label += f" ({effect.show(target, sign=False)})"
    needed = seeds_for(effect, target)
    if needed is None:
        text += f"; no number of {effect.repeat}s reaches {label}"
        if effect.examples:
            floor = (Z_TWO_SIDED + Z_POWER) * effect.fixed_se
            examples = math.ceil(effect.examples * (floor / target) ** 2)
            text += (f": the {effect.examples:,} test examples' own noise alone allows "
                     f"{effect.show(floor, sign=False)}, and about {examples:,} would be needed")
    elif needed > effect.seeds:
        text += f"; {label} needs {effect.count(needed)}"
    else:
        text += f"; {label} is within reach"
    return text
