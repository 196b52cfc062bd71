"""The UCI regression protocol (dropkit.app.experiments.regression) on synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dropkit.app.experiments import regression as R
from dropkit.app.experiments.data import standardized_regression


def _synthetic(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, size=(n, 3))
    y = 5.0 + x @ np.array([1.0, -2.0, 0.5]) + rng.normal(0, 0.3, size=n)
    return x, y


class TestSplit:
    def test_a_seeded_90_10_partition(self) -> None:
        train, test = R.split(1030, seed=3)
        assert len(train) == 927 and len(test) == 103
        assert sorted(np.concatenate([train, test]).tolist()) == list(range(1030))
        again = R.split(1030, seed=3)
        assert (again[0] == train).all() and (again[1] == test).all()
        assert set(R.split(1030, seed=4)[1].tolist()) != set(test.tolist())


class TestStandardize:
    def test_statistics_of_the_training_part_alone(self) -> None:
        x, y = _synthetic()
        x[:40] += 100.0  # test rows far away: their statistics must not leak in
        train, test = np.arange(40, 400), np.arange(40)
        data = standardized_regression("s", x, y, train, test)
        assert torch.allclose(data.x_train.mean(0), torch.zeros(3), atol=1e-5)
        assert torch.allclose(data.x_train.std(0, unbiased=False), torch.ones(3), atol=1e-5)
        expected = (x[test] - x[train].mean(0)) / x[train].std(0)
        assert np.allclose(data.x_test.numpy(), expected, atol=1e-4)
        back = data.y_test.double() * data.target_std + data.target_mean
        assert np.allclose(back.numpy(), y[test], atol=1e-4)


class TestScores:
    def test_the_ensemble_mixes_members_into_one_gaussian_in_the_target_units(self) -> None:
        x, y = np.zeros((4, 1)), np.array([0.0, 2.0, 4.0, 6.0])
        data = standardized_regression("s", x, y, np.arange(4), np.arange(2))
        # two members that ignore their input: means 0 and 2, one variance v (standardized)
        net = R.StackedMLP([0.0, 0.0], 1, 3, 2, torch.Generator().manual_seed(0))
        with torch.no_grad():
            for w in (net.w1, net.b1, net.w2):
                w.zero_()
            net.b2.copy_(torch.tensor([[[0.0, 0.5]], [[2.0, 0.5]]]))
        v = float(nn.functional.softplus(torch.tensor(0.5))) + 1e-6
        scores = R.ensemble_scores(net, data)
        s, m = data.target_std, data.target_mean  # mixture: mean 1, variance v + 1
        targets = torch.tensor(y[:2], dtype=torch.float64)
        normal = torch.distributions.Normal(torch.tensor(s + m, dtype=torch.float64),
                                            math.sqrt(v + 1) * s)
        # the standardized targets are float32: agreement to its precision
        assert scores.ll == pytest.approx(normal.log_prob(targets).mean().item(), rel=1e-6)
        assert scores.rmse == pytest.approx(((targets - (s + m)) ** 2).mean().sqrt().item(),
                                            rel=1e-6)

    def test_dropout_scores_follow_the_target_s_units(self) -> None:
        # the same network and samples on targets scaled by a: RMSE scales by a, and at
        # precision tau / a^2 the log-likelihood moves by -log(a)
        x, y = _synthetic(100)
        train, test = R.split(100, seed=0)
        a = 7.0
        scores = []
        for scale in (1.0, a):
            data = standardized_regression("s", x, y * scale, train, test)
            nets = R.dropout_networks(data, [(0.1, 1.0)], hidden=16, epochs=2, seed=0)
            scores.append(R.dropout_scores(nets.exported(0), data, 4.0 / scale**2, 200, seed=1))
        assert scores[1].rmse == pytest.approx(a * scores[0].rmse, rel=1e-5)
        assert scores[1].ll == pytest.approx(scores[0].ll - math.log(a), abs=1e-5)
        assert scores[0].mc_se > 0

    def test_training_fits_the_synthetic_signal(self) -> None:
        x, y = _synthetic(600)
        train, test = R.split(600, seed=0)
        data = standardized_regression("s", x, y, train, test)
        nets = R.dropout_networks(data, [(0.005, 10.0), (0.1, 10.0)], hidden=32, epochs=40,
                                  seed=0)
        for k in range(2):
            fitted = R.dropout_scores(nets.exported(k), data, 10.0, 100, seed=0).rmse
            assert fitted < 0.5 * float(np.std(y[test]))  # far better than the mean
        ensemble = R.ensemble(data, 2, hidden=32, epochs=40, lr=0.01, adversarial=0.01, seed=0)
        assert R.ensemble_scores(ensemble, data).rmse < 0.5 * float(np.std(y[test]))
        out = ensemble(data.x_test.expand(2, -1, -1))
        assert not torch.equal(out[0], out[1])  # members differ


class TestStacked:
    def test_stacked_networks_train_as_separate_ones(self) -> None:
        # Adam is elementwise: network k of a stack follows the same path as a stack of
        # one that holds it alone, given its data order and draws
        x, y = _synthetic(64)
        data = standardized_regression("s", x, y, np.arange(48), np.arange(48, 64))
        both = R.StackedMLP([0.0, 0.0], 3, 8, 1, torch.Generator().manual_seed(0))
        alone = R.StackedMLP([0.0], 3, 8, 1, torch.Generator().manual_seed(0))
        with torch.no_grad():
            for name in ("w1", "b1", "w2", "b2"):
                getattr(alone, name).copy_(getattr(both, name)[:1])
        loss = R._squared_error
        R.fit(both, loss, data, epochs=3, batch_size=16, lr=0.01, seed=5)
        R.fit(alone, loss, data, epochs=3, batch_size=16, lr=0.01, seed=5)
        assert torch.allclose(both.w1[0], alone.w1[0], atol=1e-6)
        assert not torch.allclose(both.w1[0], both.w1[1])

    def test_exported_network_computes_the_same_function(self) -> None:
        net = R.StackedMLP([0.1, 0.2], 3, 8, 1, torch.Generator().manual_seed(0)).eval()
        x = torch.randn(5, 3)
        for k in range(2):
            exported = net.exported(k).eval()
            assert torch.allclose(exported(x), net(x.expand(2, -1, -1))[k, :, 0], atol=1e-6)
            assert exported.net[0].p == exported.net[3].p == pytest.approx(0.1 * (k + 1))

    def test_the_drop_rate_is_applied(self) -> None:
        # binomial bound: the fraction of zeroed inputs of a 0.3-rate network
        net = R.StackedMLP([0.3, 0.0], 4, 8, 1, torch.Generator().manual_seed(0)).train()
        dropped = net._drop(torch.ones(2, 5000, 4))
        n = 5000 * 4
        frac = float((dropped[0] == 0).float().mean())
        assert abs(frac - 0.3) <= 5 * math.sqrt(0.3 * 0.7 / n)
        assert bool((dropped[1] == 1).all())


def test_the_grid_is_validated_on_the_last_fifth_and_the_best_is_tested(monkeypatch) -> None:
    x, y = _synthetic(100)
    seen = []
    lls = {1.0: -3.0, 2.0: -1.0, 3.0: -2.0, 4.0: -4.0}  # by tau

    class Nets:
        def exported(self, k):
            return k

    def networks(data, grid, **kw):
        seen.append((len(data.x_train), len(data.x_test), list(grid)))
        return Nets()

    def scores(net, data, tau, samples, seed):
        seen.append((len(data.x_test), samples, net))
        return R.Scores(0.0, lls[tau])

    monkeypatch.setattr(R, "dropout_networks", networks)
    monkeypatch.setattr(R, "dropout_scores", scores)
    result = R.dropout_split(x, y, 0, (0.1, 0.2), (1.0, 2.0, 3.0, 4.0)[:2], hidden=4,
                             epochs=1, samples=50, validation_samples=7)
    assert result[1] == (0.1, 2.0)
    assert seen[0] == (72, 18, [(0.1, 1.0), (0.1, 2.0), (0.2, 1.0), (0.2, 2.0)])
    assert seen[1:5] == [(18, 7, 0), (18, 7, 1), (18, 7, 2), (18, 7, 3)]
    assert seen[5] == (10, 50, 1)  # the best network, on the 10 test rows
