"""The statistics behind the reproductions' verdicts: standard errors from the spread
over seeds and from the binomial noise of a test set, and the two-standard-error rule."""

from __future__ import annotations

import math
from collections.abc import Sequence

from dropkit.app.experiments.report import mean_spread

__all__ = ["RANGE_95", "N_TEST", "se_diff", "pm", "binom_se", "directional"]


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

