"""Detection measures against scikit-learn's and against hand-made extremes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from dropkit import uncertainty as U
from dropkit.errors import UsageError


def _case(seed: int, n: int = 300, ties: bool = False):
    g = torch.Generator().manual_seed(seed)
    positive = torch.rand(n, generator=g) < 0.3
    scores = torch.randn(n, generator=g) + positive.double() * 0.8
    if ties:
        scores = (scores * 2).round() / 2  # many equal scores across the two classes
    return scores, positive


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_agrees_with_scikit_learn(seed, ties) -> None:
    scores, positive = _case(seed, ties=ties)
    s, y = scores.numpy(), positive.numpy()
    assert U.auroc(scores, positive) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert U.aupr(scores, positive) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    expected = fpr[np.searchsorted(tpr, 0.95)]
    assert U.fpr_at_tpr(scores, positive) == pytest.approx(expected, abs=1e-12)


def test_extremes() -> None:
    positive = torch.tensor([False, False, True, True])
    perfect = torch.tensor([0.1, 0.2, 0.8, 0.9])
    assert U.auroc(perfect, positive) == 1.0 and U.aupr(perfect, positive) == 1.0
    assert U.fpr_at_tpr(perfect, positive) == 0.0
    assert U.auroc(-perfect, positive) == 0.0
    assert U.auroc(torch.ones(4), positive) == 0.5  # all tied: chance
    assert U.aupr(torch.ones(4), positive) == 0.5  # the share of positives
    d = U.detection(perfect[:2], perfect[2:])
    assert (d.auroc, d.aupr_in, d.aupr_out, d.fpr95) == (1.0, 1.0, 1.0, 0.0)


def test_detection_is_the_measures_on_the_joined_sets() -> None:
    scores, positive = _case(9)
    d = U.detection(scores[~positive], scores[positive])
    ordered = torch.cat([scores[~positive], scores[positive]])
    flags = torch.cat([torch.zeros(int((~positive).sum()), dtype=torch.bool),
                       torch.ones(int(positive.sum()), dtype=torch.bool)])
    assert d.auroc == U.auroc(ordered, flags)
    assert d.aupr_in == pytest.approx(average_precision_score(~flags.numpy(), -ordered.numpy()))


@pytest.mark.parametrize("call, message", [
    (lambda: U.auroc(torch.ones(3), torch.ones(3, dtype=torch.bool)), "both positive and neg"),
    (lambda: U.auroc(torch.ones(3), torch.tensor([0, 1, 2])), "0/1 or booleans"),
    (lambda: U.aupr(torch.ones(3), torch.tensor([0, 1])), r"of one shape \(N,\)"),
    (lambda: U.auroc(torch.tensor([0.0, float("nan")]), torch.tensor([0, 1])), "finite"),
    (lambda: U.fpr_at_tpr(torch.ones(2), torch.tensor([0, 1]), tpr=0), r"`tpr` in \(0, 1\]"),
])
def test_bad_input_is_named(call, message) -> None:
    with pytest.raises(UsageError, match=message):
        call()
