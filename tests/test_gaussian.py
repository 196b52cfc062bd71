import math

import pytest
import torch

import dropkit.functional as F
import dropkit.nn as dn
from conftest import assert_mean, gen


class TestGaussianDropout:
    @pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
    def test_noise_has_dropouts_mean_and_variance(self, p: float) -> None:
        n = 500_000
        noise = F.gaussian_dropout(torch.ones(n, dtype=torch.float64), p, generator=gen())
        var = p / (1 - p)
        assert_mean(noise, 1.0, math.sqrt(var))
        # std error of the sample variance of a normal: var * sqrt(2 / (n - 1))
        assert abs(noise.var().item() - var) <= 5 * var * math.sqrt(2 / (n - 1))

    def test_zeroes_nothing(self) -> None:
        out = F.gaussian_dropout(torch.ones(10_000), 0.2, generator=gen())
        assert (out != 0).all()

    def test_p_one_is_an_error(self) -> None:
        with pytest.raises(ValueError, match=r"^gaussian_dropout: .*\[0, 1\), got p=1"):
            F.gaussian_dropout(torch.ones(3), 1.0)
        with pytest.raises(ValueError, match=r"^GaussianDropout: "):
            dn.GaussianDropout(1.0)


class TestGaussianNoise:
    def test_additive_noise_moments(self) -> None:
        n, std = 500_000, 0.3
        x = torch.full((n,), 2.0, dtype=torch.float64)
        noise = F.gaussian_noise(x, std, generator=gen()) - x
        assert_mean(noise, 0.0, std)
        assert abs(noise.std().item() - std) <= 5 * std / math.sqrt(2 * (n - 1))

    def test_eval_and_zero_std_are_identity(self) -> None:
        x = torch.randn(10)
        assert F.gaussian_noise(x, 0.5, training=False) is x
        assert F.gaussian_noise(x, 0.0) is x

    @pytest.mark.parametrize("std", [-1.0, math.nan, math.inf])
    def test_bad_std(self, std: float) -> None:
        with pytest.raises(ValueError, match=r"^gaussian_noise: expected `std` to be a finite"):
            F.gaussian_noise(torch.ones(3), std)
        with pytest.raises(ValueError, match=r"^GaussianNoise: expected `std`"):
            dn.GaussianNoise(std)

    def test_integer_input(self) -> None:
        with pytest.raises(TypeError, match=r"^gaussian_noise: expected a floating-point"):
            F.gaussian_noise(torch.ones(3, dtype=torch.long), 0.1)

    def test_module(self) -> None:
        m = dn.GaussianNoise(0.1, generator=gen(1))
        assert repr(m) == "GaussianNoise(std=0.1)"
        x = torch.zeros(100)
        assert torch.equal(m(x), F.gaussian_noise(x, 0.1, generator=gen(1)))
        m.eval()
        assert m(x) is x
        compiled = torch.compile(dn.GaussianNoise(0.1), fullgraph=True, backend="aot_eager")
        assert compiled(x).shape == x.shape

    def test_vmap_unbatched_input(self) -> None:
        x = torch.zeros(5)
        out = torch.func.vmap(lambda _: F.gaussian_noise(x, 1.0), randomness="different")(
            torch.arange(3)
        )
        assert not torch.equal(out[0], out[1])
