import math

import pytest
import torch

import dropkit.functional as F
from conftest import assert_binomial, gen
from dropkit.functional.alpha_dropout import SELU_ALPHA_PRIME


def _affine(p: float) -> tuple[float, float]:
    a = ((1 - p) * (1 + p * SELU_ALPHA_PRIME**2)) ** -0.5
    return a, -a * SELU_ALPHA_PRIME * p


class TestAlphaDropout:
    @pytest.mark.parametrize("p", [0.05, 0.2, 0.5])
    def test_keeps_zero_mean_and_unit_variance(self, p: float) -> None:
        n = 1_000_000
        x = torch.randn(n, generator=gen(1), dtype=torch.float64)
        out = F.alpha_dropout(x, p, True, generator=gen(2))
        # For standard-normal x the output has mean 0 and variance 1 exactly (Klambauer
        # et al. 2017, eq. 14). Standard errors: var/n for the mean; for the sample
        # variance, sqrt((m4 - var^2) / n) with the output's fourth central moment m4.
        a, b = _affine(p)
        # Output is a*x + b w.p. 1-p and a*alpha' + b w.p. p; its 4th moment:
        kept_m4 = a**4 * 3 + 6 * a**2 * b**2 + b**4  # E[(a x + b)^4], x ~ N(0, 1)
        m4 = (1 - p) * kept_m4 + p * (a * SELU_ALPHA_PRIME + b) ** 4
        assert abs(out.mean().item()) <= 5 / math.sqrt(n)
        assert abs(out.var().item() - 1) <= 5 * math.sqrt((m4 - 1) / n)

    def test_dropped_units_take_the_saturation_value(self) -> None:
        p = 0.3
        a, b = _affine(p)
        x = torch.randn(100_000, generator=gen(3), dtype=torch.float64)
        out = F.alpha_dropout(x, p, True, generator=gen(4))
        kept = torch.isclose(out, a * x + b, rtol=0, atol=1e-12)
        dropped = torch.isclose(out, torch.tensor(a * SELU_ALPHA_PRIME + b, dtype=x.dtype))
        assert (kept | dropped).all()
        assert_binomial(int(dropped.sum()), x.numel(), p)

    def test_inplace(self) -> None:
        x = torch.randn(50)
        expected = F.alpha_dropout(x.clone(), 0.2, True, generator=gen(6))
        out = F.alpha_dropout(x, 0.2, True, inplace=True, generator=gen(6))
        assert out is x
        torch.testing.assert_close(x, expected)  # fused addcmul vs mul_ then add_: rounding


class TestFeatureAlphaDropout:
    def test_one_value_per_dropped_channel(self) -> None:
        p = 0.5
        a, b = _affine(p)
        out = F.feature_alpha_dropout(torch.randn(64, 8, 4, 4), p, True, generator=gen())
        sat = torch.tensor(a * SELU_ALPHA_PRIME + b)
        dropped = torch.isclose(out, sat).flatten(2).all(-1)  # (N, C)
        assert_binomial(int(dropped.sum()), 64 * 8, p)

    def test_needs_a_channel_dim(self) -> None:
        with pytest.raises(ValueError, match=r"^feature_alpha_dropout: expected an \(N, C, \*\)"):
            F.feature_alpha_dropout(torch.randn(5), 0.5)


@pytest.mark.parametrize("name", ["alpha_dropout", "feature_alpha_dropout"])
def test_the_default_is_torch_s_no_draw(name: str) -> None:
    """torch's alpha dropouts default to training=False (its F.dropout to True)."""
    import inspect

    ours = inspect.signature(getattr(F, name)).parameters["training"].default
    theirs = inspect.signature(getattr(torch.nn.functional, name)).parameters["training"].default
    assert ours is theirs is False
    x = torch.randn(2, 3, 4)
    assert getattr(F, name)(x, 0.5) is x
