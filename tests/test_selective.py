"""Selective prediction against a direct, independent definition."""

from __future__ import annotations

import math

import pytest
import torch

from dropkit import uncertainty as U
from dropkit.errors import UsageError


def _brute_aurc(u: torch.Tensor, wrong: torch.Tensor) -> float:
    """Each input is answered with every input no more uncertain than it: the mean over
    inputs of the error rate of that set."""
    risks = [float(wrong[u <= u[i]].double().mean()) for i in range(len(u))]
    return sum(risks) / len(risks)


@pytest.mark.parametrize("seed", range(5))
def test_aurc_agrees_with_its_definition(seed) -> None:
    g = torch.Generator().manual_seed(seed)
    u = (torch.rand(80, generator=g) * 6).round()  # ties
    wrong = torch.rand(80, generator=g) < 0.3
    assert U.aurc(u, wrong) == pytest.approx(_brute_aurc(u, wrong), abs=1e-12)
    curve = U.risk_coverage(u, wrong)
    assert float(curve.coverage[-1]) == 1.0
    assert float(curve.risk[-1]) == pytest.approx(float(wrong.double().mean()))


def test_perfect_and_worst_orderings() -> None:
    wrong = torch.tensor([False] * 8 + [True] * 2)
    perfect = wrong.double() + torch.arange(10) / 20  # the errors last, one by one
    assert U.e_aurc(perfect, wrong) == pytest.approx(0.0, abs=1e-15)
    assert U.aurc(-perfect, wrong) > U.aurc(perfect, wrong)
    assert U.accuracy_at_coverage(perfect, wrong, 0.8) == 1.0
    assert U.accuracy_at_coverage(-perfect, wrong, 0.2) == 0.0
    assert U.aurc(perfect, torch.zeros(10, dtype=torch.bool)) == 0.0
    # tied errors are answered together, at the risk of the whole set
    assert U.e_aurc(wrong.double(), wrong) == pytest.approx(0.2 * 2 / 10 - (1 / 9 + 2 / 10) / 10)


def test_the_best_ordering_approaches_its_continuous_form() -> None:
    # r + (1 - r) ln(1 - r) (Geifman et al. 2019) is the integral over coverage c of
    # max(0, 1 - (1 - r) / c); the exact optimum is its right Riemann sum on n steps, and
    # for an increasing function from 0 to r that overshoots by at most r / n
    for n, errors in ((1000, 200), (10000, 500)):
        wrong = torch.zeros(n, dtype=torch.bool)
        wrong[:errors] = True
        r = errors / n
        best = U.aurc(wrong.double() + torch.arange(n) / (2 * n), wrong)
        gap = best - (r + (1 - r) * math.log(1 - r))
        assert 0 <= gap <= r / n + 1e-12


def test_bad_input_is_named() -> None:
    with pytest.raises(UsageError, match=r"of one shape \(N,\)"):
        U.aurc(torch.ones(3), torch.ones(2, dtype=torch.bool))
    with pytest.raises(UsageError, match=r"`coverage` in \(0, 1\]"):
        U.accuracy_at_coverage(torch.ones(3), torch.ones(3, dtype=torch.bool), 0.0)
