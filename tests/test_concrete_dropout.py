import math

import pytest
import torch
from torch import nn

import dropkit
import dropkit.functional as F
import dropkit.nn as dn
from conftest import gen


class TestConcreteDropoutFunction:
    def test_approaches_bernoulli_at_low_temperature(self) -> None:
        out = F.concrete_dropout(torch.ones(200_000), 0.3, 1e-3, generator=gen())
        near_zero = (out < 1e-3).double().mean().item()
        assert abs(near_zero - 0.3) <= 5 * math.sqrt(0.3 * 0.7 / 200_000)

    def test_differentiable_in_p(self) -> None:
        p = torch.tensor(0.3, requires_grad=True)
        F.concrete_dropout(torch.ones(100), p, generator=gen()).sum().backward()
        assert p.grad is not None and torch.isfinite(p.grad)

    def test_eval_identity_and_bad_temperature(self) -> None:
        x = torch.randn(4)
        assert F.concrete_dropout(x, 0.3, training=False) is x
        with pytest.raises(ValueError, match=r"^concrete_dropout: expected `temperature` > 0"):
            F.concrete_dropout(x, 0.3, 0.0)

    @pytest.mark.parametrize("p", [1.5, -0.1, 1.0])
    def test_bad_float_rate(self, p: float) -> None:
        # p = 1 gives 0 / 0; p outside [0, 1] gave all-NaN outputs before it was checked
        with pytest.raises(ValueError, match=r"^concrete_dropout: expected `p` to be a drop "
                                             r"probability in \[0, 1\)"):
            F.concrete_dropout(torch.ones(3), p)

    def test_bad_tensor_rate(self) -> None:
        with pytest.raises(RuntimeError, match=r"concrete_dropout: expected `p` in \[0, 1\)"):
            F.concrete_dropout(torch.ones(3), torch.tensor(1.5))
        with pytest.raises(TypeError, match=r"^concrete_dropout: expected a floating-point "
                                            r"tensor `p`, got dtype torch.int64"):
            F.concrete_dropout(torch.ones(3), torch.tensor(1))

    def test_dtype(self) -> None:
        assert F.concrete_dropout(torch.ones(4, dtype=torch.bfloat16), 0.3).dtype == torch.bfloat16


class TestConcreteDropoutModule:
    def test_p_reads_the_learned_rate_and_eval_is_the_layer(self) -> None:
        layer = nn.Linear(3, 2)
        m = dn.ConcreteDropout(layer, p=0.25)
        assert m.p == pytest.approx(0.25)
        assert "p=0.25" in repr(m)
        x = torch.randn(5, 3)
        m.eval()
        assert torch.equal(m(x), layer(x))

    def test_regularization_matches_the_paper(self) -> None:
        layer = nn.Linear(3, 2)
        m = dn.ConcreteDropout(layer, p=0.2, weight_regularizer=1e-2, dropout_regularizer=1e-3)
        m(torch.randn(5, 3))
        squares = sum(w.pow(2).sum() for w in layer.parameters())
        expected = 1e-2 * squares / 0.8 + 1e-3 * 3 * (0.2 * math.log(0.2) + 0.8 * math.log(0.8))
        assert m.regularization().item() == pytest.approx(expected.item(), rel=1e-5)
        model = nn.Sequential(m, nn.ReLU(), dn.ConcreteDropout(nn.Linear(2, 1)))
        model(torch.randn(5, 3))
        total = dropkit.concrete_regularization(model)
        assert total.item() == pytest.approx(
            m.regularization().item() + model[2].regularization().item()
        )

    def test_regularization_needs_a_forward(self) -> None:
        with pytest.raises(RuntimeError, match="call forward once first"):
            dn.ConcreteDropout().regularization()

    def test_no_concrete_layer_means_zero(self) -> None:
        assert dropkit.concrete_regularization(nn.Linear(2, 2)).item() == 0.0

    def test_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match="open interval"):
            dn.ConcreteDropout(p=1.0)
        with pytest.raises(ValueError, match="temperature"):
            dn.ConcreteDropout(temperature=-1.0)


def _learned_rate(n: int, seed: int = 0, steps: int = 800) -> float:
    """Fit y = sin(2x) + noise with two Concrete layers and the paper's N-scaled priors."""
    g = gen(seed)
    torch.manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 4 - 2
    y = torch.sin(2 * x) + 0.1 * torch.randn(n, 1, generator=g)
    tau, length = 100.0, 1e-2
    reg = {"weight_regularizer": length**2 / (tau * n), "dropout_regularizer": 2 / (tau * n)}
    model = nn.Sequential(
        nn.Linear(1, 64), nn.ReLU(),
        dn.ConcreteDropout(nn.Linear(64, 64), p=0.2, generator=g, **reg), nn.ReLU(),
        dn.ConcreteDropout(nn.Linear(64, 1), p=0.2, generator=g, **reg),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(0, n, (min(n, 128),), generator=g)
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        loss = loss + dropkit.concrete_regularization(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model[4].p


@pytest.mark.slow
def test_learned_rate_moves_toward_what_the_data_support() -> None:
    # Gal et al. 2017, fig. 3: the optimal rate falls as data grow. From the same
    # start (0.2), 10 points push the rate up (little evidence: stay uncertain) and
    # 2,000 points push it down (the data pin the function).
    few, many = _learned_rate(10), _learned_rate(2000)
    assert few > 0.25
    assert many < 0.15
