"""Selective prediction: answer only where the network is most certain, and measure the
risk it takes at each coverage (Geifman & El-Yaniv 2017).

``uncertainty`` (N,) orders the inputs (lower answers first: predictive entropy, or 1 -
max probability); ``errors`` (N,) marks the wrong predictions. Inputs of equal
uncertainty are answered together (a threshold cannot split them), so the curve has one
point per distinct uncertainty. Risks and coverages are fractions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dropkit.errors import UsageError, UsageTypeError

__all__ = ["RiskCoverage", "risk_coverage", "aurc", "e_aurc", "accuracy_at_coverage"]


@dataclass(frozen=True)
class RiskCoverage:
    """The risk-coverage curve: at each distinct threshold, the share of inputs answered
    and the share of those answered wrongly."""

    coverage: Tensor  # (K,) increasing to 1
    risk: Tensor  # (K,)


def _check(fn: str, uncertainty: Tensor, errors: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(uncertainty, Tensor) or not isinstance(errors, Tensor):
        raise UsageTypeError(f"{fn}: expected tensors `uncertainty` and `errors`, got "
                             f"{type(uncertainty).__name__} and {type(errors).__name__}")
    if uncertainty.shape != errors.shape or uncertainty.dim() != 1 or len(errors) == 0:
        raise UsageError(f"{fn}: expected `uncertainty` and `errors` of one shape (N,), N >= "
                         f"1, got {tuple(uncertainty.shape)} and {tuple(errors.shape)}")
    if not bool(torch.isfinite(uncertainty).all()):
        raise UsageError(f"{fn}: expected finite `uncertainty`, got NaN or infinity")
    return uncertainty.double(), errors.bool()


def risk_coverage(uncertainty: Tensor, errors: Tensor) -> RiskCoverage:
    """The risk-coverage curve of answering the least uncertain inputs first."""
    u, wrong = _check("risk_coverage", uncertainty, errors)
    order = torch.argsort(u, stable=True)
    s, w = u[order], wrong[order].double()
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    answered = torch.arange(1, len(s) + 1, dtype=torch.float64)[last]
    return RiskCoverage(answered / len(s), w.cumsum(0)[last] / answered)


def aurc(uncertainty: Tensor, errors: Tensor) -> float:
    """Area under the risk-coverage curve: the mean, over the inputs, of the risk at the
    coverage where each is answered (lower is better; 0 when every answer is right)."""
    u, wrong = _check("aurc", uncertainty, errors)
    curve = risk_coverage(u, wrong)
    counts = torch.diff(torch.cat([curve.coverage.new_zeros(1), curve.coverage])) * len(u)
    return float((counts * curve.risk).sum() / len(u))


def e_aurc(uncertainty: Tensor, errors: Tensor) -> float:
    """Excess AURC (Geifman et al. 2019): AURC less that of the best ordering with the
    same errors, which answers every right prediction first and the errors one by one;
    0 for such an ordering (an uncertainty that ties errors together scores above 0:
    a threshold cannot answer part of a tie).
    The best is computed exactly for these N inputs (its continuous form is r + (1 - r)
    ln(1 - r) for an error rate r)."""
    u, wrong = _check("e_aurc", uncertainty, errors)
    return aurc(u, wrong) - aurc(_best_order(wrong), wrong)


def _best_order(wrong: Tensor) -> Tensor:
    """An uncertainty that answers every right prediction first and then the errors one
    at a time (distinct values, so no threshold groups them)."""
    n = len(wrong)
    return wrong.double() + torch.arange(n, dtype=torch.float64) / (2 * n)


def accuracy_at_coverage(uncertainty: Tensor, errors: Tensor, coverage: float) -> float:
    """Accuracy over the ceil(coverage x N) least uncertain inputs (ties broken by
    position, the one place a threshold is not used)."""
    u, wrong = _check("accuracy_at_coverage", uncertainty, errors)
    if not 0 < coverage <= 1:
        raise UsageError(f"accuracy_at_coverage: expected `coverage` in (0, 1], got "
                         f"coverage={coverage!r}")
    k = math.ceil(coverage * len(u) - 1e-9)
    chosen = torch.argsort(u, stable=True)[:k]
    return 1.0 - float(wrong[chosen].double().mean())
