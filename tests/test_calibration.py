"""Calibration measures and temperature scaling against direct definitions."""

from __future__ import annotations

import math

import pytest
import torch

from dropkit import uncertainty as U
from dropkit.errors import UsageError


def _case(seed: int, n: int = 500, c: int = 4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    targets = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(-1)
    return logits, targets


def _brute_ece(conf: torch.Tensor, hit: torch.Tensor, groups: list[torch.Tensor]) -> float:
    return sum(len(i) * abs(float(hit[i].mean() - conf[i].mean())) for i in groups
               if len(i)) / len(conf)


@pytest.mark.parametrize("seed", range(3))
def test_equal_mass_bins_hold_equal_counts(seed) -> None:
    logits, targets = _case(seed, n=503)
    probs = logits.softmax(-1)
    cal = U.ece(probs, targets, n_bins=10, binning="mass")
    assert set(cal.count.tolist()) <= {50.0, 51.0} and cal.count.sum() == 503
    conf, pred = probs.max(-1)
    order = torch.argsort(conf, stable=True)
    ranks = torch.arange(503) * 10 // 503
    groups = [order[ranks == b] for b in range(10)]
    assert cal.ece == pytest.approx(_brute_ece(conf, (pred == targets).double(), groups))
    assert (torch.diff(cal.bin_edges) >= 0).all()


def test_classwise_ece_is_the_mean_of_each_class_s() -> None:
    logits, targets = _case(4)
    probs = logits.softmax(-1)
    edges = torch.linspace(0, 1, 16, dtype=torch.float64)
    total = 0.0
    for k in range(4):
        p, hit = probs[:, k], (targets == k).double()
        index = torch.bucketize(p, edges[1:-1], right=True)
        total += _brute_ece(p, hit, [torch.nonzero(index == b)[:, 0] for b in range(15)])
    assert U.classwise_ece(probs, targets) == pytest.approx(total / 4)


def test_a_perfect_and_a_certainly_wrong_network() -> None:
    targets = torch.tensor([0, 1, 2, 0])
    right = torch.nn.functional.one_hot(targets, 3).double()
    assert U.ece(right, targets).ece == 0.0 and U.ece(right, targets, binning="mass").ece == 0.0
    wrong = torch.nn.functional.one_hot((targets + 1) % 3, 3).double()
    assert U.ece(wrong, targets).ece == 1.0  # a fraction, never 100
    assert U.classwise_ece(wrong, targets) == pytest.approx(2 * 4 / 4 / 3)


class TestTemperature:
    def test_recovers_the_temperature_that_made_the_labels(self) -> None:
        # labels drawn from softmax(z / 2): the fit lands within 5 standard errors of 2,
        # the standard error from the observed information of the NLL at the fit
        n = 20000
        g = torch.Generator().manual_seed(0)
        z = torch.randn(n, 5, generator=g, dtype=torch.float64) * 3
        y = torch.multinomial((z / 2).softmax(-1), 1, generator=g).squeeze(-1)
        t = U.fit_temperature(z, y)
        tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
        total = torch.nn.functional.cross_entropy(z / tt, y, reduction="sum")
        (grad,) = torch.autograd.grad(total, tt, create_graph=True)
        (info,) = torch.autograd.grad(grad, tt)
        assert abs(t - 2.0) <= 5 / math.sqrt(float(info))

    def test_is_the_minimum_over_a_fine_grid(self) -> None:
        logits, targets = _case(7)
        t = U.fit_temperature(logits * 3, targets)  # overconfident: T > 1
        grid = torch.linspace(0.5, 6, 2201, dtype=torch.float64)
        nlls = [float(torch.nn.functional.cross_entropy(logits * 3 / s, targets)) for s in grid]
        best = float(grid[int(torch.tensor(nlls).argmin())])
        assert t > 1 and abs(t - best) <= float(grid[1] - grid[0])

    def test_calibrated_nll_on_its_own_split_is_no_worse(self) -> None:
        logits, targets = _case(8)
        raw = float(torch.nn.functional.cross_entropy(logits * 4, targets))
        calibrated = U.calibrated_nll(logits * 4, targets, logits * 4, targets)
        t = U.fit_temperature(logits * 4, targets)
        assert calibrated <= raw
        assert calibrated == pytest.approx(
            float(torch.nn.functional.cross_entropy(logits * 4 / t, targets)))


def test_the_scaled_model_divides_its_logits_and_keeps_its_classes() -> None:
    from dropkit.app.models import MLPWithDropout

    net = MLPWithDropout(784, 16, 10).eval()
    x = torch.rand(5, 784)
    scaled = U.TemperatureScaled(net, 2.5).eval()
    assert torch.allclose(scaled(x), net(x) / 2.5)
    assert torch.equal(scaled(x).argmax(-1), net(x).argmax(-1))
    for bad in (0.0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(UsageError, match="`temperature` to be a finite number > 0"):
            U.TemperatureScaled(net, bad)


@pytest.mark.parametrize("call, message", [
    (lambda: U.ece(torch.ones(3, 2) / 2, torch.zeros(3, dtype=torch.long), binning="x"),
     r"`binning` to be one of \('width', 'mass'\)"),
    (lambda: U.fit_temperature(torch.full((2, 2), float("nan")), torch.zeros(2).long()),
     "finite `logits`"),
    (lambda: U.classwise_ece(torch.ones(3, 2), torch.zeros(2).long()), "integer targets"),
])
def test_bad_input_is_named(call, message) -> None:
    with pytest.raises(UsageError, match=message):
        call()
