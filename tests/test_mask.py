import math

import pytest
import torch

from conftest import assert_binomial, assert_mean, gen
from dropkit import mask
from dropkit.mask import (
    apply_noise,
    bernoulli_dropout,
    bernoulli_mask,
    noise_shape,
    normal_noise,
    zeros_like_input,
)


class TestNoiseShape:
    def test_broadcast_dims_become_one(self) -> None:
        assert noise_shape((8, 3, 5, 5), (2, 3)) == (8, 3, 1, 1)
        assert noise_shape((8, 3, 5, 5), ()) == (8, 3, 5, 5)

    def test_empty_dim_stays_empty(self) -> None:
        assert noise_shape((0, 3), (0,)) == (0, 3)


class TestBernoulliMask:
    @pytest.mark.parametrize("keep", [0.1, 0.5, 0.95])
    def test_rate_within_binomial_bound(self, keep: float) -> None:
        n = 200_000
        mask = bernoulli_mask(torch.empty(n), keep, generator=gen())
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert_binomial(int(mask.sum()), n, keep)

    def test_shape_follows_broadcast_dims(self) -> None:
        mask = bernoulli_mask(torch.empty(4, 3, 6, 6), 0.5, (2, 3), generator=gen())
        assert mask.shape == (4, 3, 1, 1)

    def test_neighbours_are_independent(self) -> None:
        # Under independence the count S of adjacent kept pairs has mean (n-1) q^2 and, as
        # overlapping pairs share an element, variance (n-1) q^2 (1-q^2) + 2 (n-2)(q^3-q^4).
        n, q = 400_000, 0.5
        mask = bernoulli_mask(torch.empty(n), q, generator=gen(2)).bool()
        both = int((mask[:-1] & mask[1:]).sum())
        var = (n - 1) * q**2 * (1 - q**2) + 2 * (n - 2) * (q**3 - q**4)
        assert abs(both - (n - 1) * q**2) <= 5 * math.sqrt(var)


class TestNormalNoise:
    def test_moments(self) -> None:
        noise = normal_noise(torch.empty(200_000), 1.0, 0.5, generator=gen())
        assert_mean(noise, 1.0, 0.5)
        # variance of a normal sample: std error of s^2 is sigma^2 sqrt(2 / (n - 1))
        var = noise.double().var().item()
        assert abs(var - 0.25) <= 5 * 0.25 * math.sqrt(2 / (noise.numel() - 1))


class TestApplyAndZeros:
    def test_apply_noise_in_place_writes_input(self) -> None:
        x = torch.ones(3)
        out = apply_noise(x, torch.tensor([0.0, 2.0, 2.0]), inplace=True)
        assert out is x
        assert x.tolist() == [0.0, 2.0, 2.0]

    def test_zeros_never_nan(self) -> None:
        x = torch.tensor([math.inf, -math.inf, math.nan, 1.0])
        assert zeros_like_input(x).tolist() == [0.0, 0.0, 0.0, 0.0]


class TestBernoulliDropout:
    """The body every Bernoulli variant shares (dropout, channel, locked, DropPath, ...)."""

    def test_identity_cases_return_the_input(self) -> None:
        x = torch.randn(4, 5)
        assert bernoulli_dropout(x, 0.5, False, False, (), None) is x
        assert bernoulli_dropout(x, 0.0, True, False, (), None) is x

    def test_p_one_is_exact_zeros_even_for_infinite_input(self) -> None:
        x = torch.tensor([1.0, float("inf"), -2.0])
        assert torch.equal(bernoulli_dropout(x, 1.0, True, False, (), None), torch.zeros(3))

    @pytest.mark.parametrize("scale", [True, False])
    def test_outputs_are_zero_or_scaled_input_shared_along_dims(self, scale: bool) -> None:
        x = torch.rand(8, 6) + 0.5
        out = bernoulli_dropout(x, 0.25, True, False, (1,), gen(2), scale=scale)
        kept = x / 0.75 if scale else x
        assert ((out == 0) | torch.isclose(out, kept)).all()
        rows = (out == 0).all(1) | (out != 0).all(1)  # one draw per row: (N, 1)
        assert rows.all()


class TestTorchFusedKernel:
    """On FUSED_DEVICES (CUDA), element-wise dropout from the default generator takes
    torch's fused kernel; here the CPU stands in for CUDA."""

    @pytest.fixture(autouse=True)
    def cpu_is_fused(self, monkeypatch) -> list[int]:
        import torch.nn.functional as TF

        from dropkit import mask

        calls: list[int] = []
        real = TF.dropout

        def counting(*args, **kwargs):
            calls.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(mask, "FUSED_DEVICES", frozenset({"cpu"}))
        monkeypatch.setattr(TF, "dropout", counting)
        return calls

    def test_taken_only_for_element_wise_draws_from_the_default_generator(
            self, cpu_is_fused) -> None:
        import dropkit.nn as dn

        x = torch.ones(1000, 50)
        out = dn.Dropout(0.3)(x)
        assert cpu_is_fused == [1]
        assert_binomial(int((out == 0).sum()), x.numel(), 0.3)
        assert torch.equal(out.unique(), torch.tensor([0.0, 1 / 0.7]))
        dn.Dropout(0.3, generator=gen(1))(x)  # an explicit generator: the primitive
        dn.Dropout2d(0.3)(torch.ones(4, 8, 5, 5))  # a shared draw: the primitive
        dn.DropPath(0.3)(x)
        assert cpu_is_fused == [1]

    def test_a_checkpointed_recompute_still_replays_the_mask(self, cpu_is_fused) -> None:
        import torch.utils.checkpoint as cp

        import dropkit.nn as dn

        m = dn.Dropout(0.5)
        for reentrant in (True, False):
            x = torch.ones(200, 30, requires_grad=True)
            y = cp.checkpoint(m, x, use_reentrant=reentrant, preserve_rng_state=False)
            y.sum().backward()
            assert torch.equal(x.grad, (y != 0).float() / 0.5)  # the forward's own mask
        assert cpu_is_fused == []  # inside a region: the replayable primitive

    def test_mc_predict_vectorizes_it_and_finds_the_same_sites(self, cpu_is_fused) -> None:
        import dropkit
        import dropkit.nn as dn

        model = torch.nn.Sequential(torch.nn.Linear(6, 16), dn.Dropout(0.5),
                                    torch.nn.Linear(16, 3))
        x = torch.randn(4, 6)
        out = dropkit.mc_predict(model, x, 8, strategy="vmap")
        assert cpu_is_fused and out.shape == (8, 4, 3)
        assert len({tuple(o.flatten().tolist()) for o in out}) == 8
        assert [(s.name, s.kind) for s in dropkit.dropout_sites(model, x)] == [("1", "module")]
        # the fused kernel under vmap draws every sample's own mask: two samples agree at
        # a position with probability 0.3^2 + 0.7^2 (one mask broadcast: everywhere)
        torch.manual_seed(0)
        out = dropkit.mc_predict(torch.nn.Sequential(dn.Dropout(0.3)), torch.ones(1, 4000),
                                 2, strategy="vmap")
        assert_binomial(int(((out[0] == 0) == (out[1] == 0)).sum()), 4000, 0.3**2 + 0.7**2)


class TestSharedDraws:
    """Inside shared_draws, one generator serves every draw and the batch dim is shared."""

    def test_the_batch_dim_is_broadcast_and_the_generator_shared(self) -> None:
        x = torch.ones(5, 3, 4)
        with mask.shared_draws(torch.Generator().manual_seed(1)) as g:
            assert mask.shared_generator() is g
            m = mask.bernoulli_mask(x, 0.5)
            assert m.shape == (1, 3, 4)  # one network for the 5 inputs
            assert mask.bernoulli_mask(x, 0.5, (2,), batch_dim=1).shape == (5, 1, 1)
            assert mask.normal_noise(x, 0.0, 1.0, batch_dim=None).shape == (5, 3, 4)
        again = mask.bernoulli_mask(x[:1], 0.5, generator=torch.Generator().manual_seed(1))
        assert torch.equal(m, again)  # the shared generator's first draw, batch aside
        assert mask.shared_generator() is None
        assert mask.bernoulli_mask(x, 0.5).shape == (5, 3, 4)  # outside: as asked

    def test_nested_contexts_restore_the_outer_one_even_after_an_error(self) -> None:
        outer, inner = torch.Generator(), torch.Generator()
        with mask.shared_draws(outer):
            with pytest.raises(RuntimeError), mask.shared_draws(inner):
                raise RuntimeError("boom")
            assert mask.shared_generator() is outer
        assert mask.shared_generator() is None

    def test_torch_s_fused_kernel_is_never_taken_inside(self, monkeypatch) -> None:
        monkeypatch.setattr(mask, "FUSED_DEVICES", frozenset({"cpu"}))
        x = torch.ones(6, 8)
        with mask.shared_draws(torch.Generator().manual_seed(0)):
            y = mask.bernoulli_dropout(x, 0.5, True, False, (), None)
        assert all(torch.equal(y[n], y[0]) for n in range(6))

    @pytest.mark.parametrize(("shape", "dim"), [((7,), None), ((2, 7), 0), ((2, 3, 4), 0)])
    def test_batch_first_is_torch_s_convention(self, shape, dim) -> None:
        assert mask.batch_first(torch.empty(shape)) == dim
