import math

import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from conftest import gen
from dropkit import uncertainty as U


def _probs(t: int = 20, n: int = 30, c: int = 5, seed: int = 0) -> torch.Tensor:
    logits = torch.randn(t, n, c, generator=gen(seed), dtype=torch.float64) * 2
    return logits.softmax(-1)


class TestEntropies:
    def test_decomposition_against_an_independent_formula(self) -> None:
        p = _probs()
        # mutual information = E_t KL(p_t || mean p): computed without the entropies
        mean = p.mean(0, keepdim=True)
        kl = (p * (p.log() - mean.log())).sum(-1).mean(0)
        torch.testing.assert_close(U.mutual_information(p), kl)
        torch.testing.assert_close(
            U.predictive_entropy(p), U.expected_entropy(p) + U.mutual_information(p)
        )
        assert (U.mutual_information(p) >= -1e-12).all()

    def test_known_values(self) -> None:
        uniform = torch.full((4, 2, 3), 1 / 3, dtype=torch.float64)
        torch.testing.assert_close(U.predictive_entropy(uniform), torch.full((2,), math.log(3),
                                   dtype=torch.float64))
        zeros = torch.zeros(2, dtype=torch.float64)
        torch.testing.assert_close(U.mutual_information(uniform), zeros)
        # two confident samples that disagree: all uncertainty is epistemic
        split = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]], dtype=torch.float64)
        assert U.expected_entropy(split).item() == 0.0
        assert U.mutual_information(split).item() == pytest.approx(math.log(2))

    def test_variation_ratio(self) -> None:
        votes = torch.tensor([0, 0, 1, 2])  # 4 samples; mode 0 has 2 votes
        p = torch.nn.functional.one_hot(votes, 3).double()[:, None, :]  # (4, 1, 3)
        assert U.variation_ratio(p).item() == pytest.approx(0.5)

    def test_bad_shape(self) -> None:
        with pytest.raises(ValueError, match=r"^predictive_entropy: expected float probability"):
            U.predictive_entropy(torch.ones(3))


class TestScores:
    def test_nll_and_brier(self) -> None:
        probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=torch.float64)
        y = torch.tensor([0, 1])
        assert U.nll(probs, y).item() == pytest.approx(-(math.log(0.7) + math.log(0.1)) / 2)
        expected = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.9**2 + 0.8**2)) / 2
        assert U.brier(probs, y).item() == pytest.approx(expected)

    def test_ece_equals_torchmetrics(self) -> None:
        probs = _probs(1, 2000, 4, seed=3)[0]
        y = torch.randint(0, 4, (2000,), generator=gen(4))
        ours = U.ece(probs, y, n_bins=10)
        theirs = multiclass_calibration_error(probs.float(), y, num_classes=4, n_bins=10)
        assert ours.ece == pytest.approx(theirs.item(), abs=1e-6)
        assert int(ours.count.sum()) == 2000
        filled = ours.count > 0
        assert ((ours.confidence[filled] >= ours.bin_edges[:-1][filled])
                & (ours.confidence[filled] <= ours.bin_edges[1:][filled])).all()

    def test_ece_builds_its_bins_on_the_inputs_device(self) -> None:
        # with another default device (as a CUDA user's "meta" or "cuda" default), bins
        # built on the default device would not meet the inputs
        probs = _probs(1, 50, 4, seed=5)[0]
        y = torch.randint(0, 4, (50,), generator=gen(6))
        expected = U.ece(probs, y).ece
        with torch.device("meta"):
            out = U.ece(probs, y)
        assert out.bin_edges.device == probs.device and out.ece == expected

    def test_perfect_calibration(self) -> None:
        probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        assert U.ece(probs, torch.tensor([0, 1])).ece == 0.0

    def test_target_shape(self) -> None:
        with pytest.raises(ValueError, match=r"^nll: expected mean probabilities"):
            U.nll(torch.ones(3, 2), torch.ones(4, dtype=torch.long))


class TestRegression:
    def test_gaussian_predictive(self) -> None:
        s = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
        mean, var = U.gaussian_predictive(s, tau=2.0)
        assert mean.item() == 2.0 and var.item() == pytest.approx(1.0 + 0.5)

    def test_log_likelihood_is_the_mixture_density(self) -> None:
        s = torch.randn(7, 5, generator=gen(1), dtype=torch.float64)
        y = torch.randn(5, generator=gen(2), dtype=torch.float64)
        tau = 3.0
        density = (torch.exp(-0.5 * tau * (y - s) ** 2) * math.sqrt(tau / (2 * math.pi))).mean(0)
        assert U.regression_log_likelihood(s, y, tau).item() == pytest.approx(
            density.log().mean().item()
        )
        assert U.rmse(s, y).item() == pytest.approx(((s.mean(0) - y) ** 2).mean().sqrt().item())

    def test_bad_tau(self) -> None:
        with pytest.raises(ValueError, match="tau"):
            U.gaussian_predictive(torch.ones(2, 1), tau=0.0)
