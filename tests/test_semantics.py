"""Rules every dropout variant keeps, checked once per variant (see variants.py)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import dropkit.nn as dn
from conftest import assert_binomial, gen
from variants import VARIANTS, Variant

ids = [v.name for v in VARIANTS]
with_module = [v for v in VARIANTS if v.module is not None]
inverted = [v for v in VARIANTS if v.inverted]


def _input(v: Variant, dtype: torch.dtype = torch.float32, seed: int = 1) -> torch.Tensor:
    # Entries bounded away from 0, so an output of 0 can only come from a drop.
    x = torch.randn(v.shape, generator=gen(seed), dtype=torch.float64)
    return (x.sign() * (x.abs() + 0.5)).to(dtype)


def _eval(v: Variant, x: torch.Tensor) -> torch.Tensor:
    return x if v.eval_fn is None else v.eval_fn(x)


@pytest.mark.parametrize("v", VARIANTS, ids=ids)
class TestArguments:
    @pytest.mark.parametrize("p", [-0.1, 1.5, math.nan, math.inf])
    def test_bad_p_is_value_error_naming_function(self, v: Variant, p: float) -> None:
        with pytest.raises(ValueError, match=rf"^{v.name}: expected `p` to be a drop probability"):
            v.call(_input(v), p, True, None)

    def test_p_that_is_not_a_number_is_type_error(self, v: Variant) -> None:
        with pytest.raises(TypeError, match=rf"^{v.name}: expected `p` to be a float"):
            v.call(_input(v), "0.5", True, None)  # type: ignore[arg-type]

    @pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
    def test_integer_or_bool_tensor_is_type_error(self, v: Variant, dtype: torch.dtype) -> None:
        with pytest.raises(TypeError, match=rf"^{v.name}: expected a floating-point .* {dtype}"):
            v.call(torch.ones(v.shape, dtype=dtype), 0.5, True, None)

    def test_checks_run_before_anything_changes(self, v: Variant) -> None:
        x = _input(v)
        before = x.clone()
        with pytest.raises(ValueError):
            v.call(x, 2.0, True, None)
        assert torch.equal(x, before)

    def test_a_generator_that_is_not_one_is_rejected(self, v: Variant) -> None:
        with pytest.raises(TypeError, match=rf"^{v.name}: expected `generator` to be a "
                                            r"torch.Generator or None, got object"):
            v.call(_input(v), 0.5, True, object())  # type: ignore[arg-type]

    def test_generator_on_another_device_than_the_input_is_rejected(self, v: Variant) -> None:
        # a CPU generator cannot draw noise for an input elsewhere ("meta" stands in for
        # "cuda" on this CPU-only machine)
        x = _input(v).to("meta")
        with pytest.raises(ValueError, match=rf"^{v.name}: expected a generator on device "
                                             r"'meta' \(the input's\), got one on 'cpu'"):
            v.call(x, 0.5, True, gen())


@pytest.mark.parametrize("v", VARIANTS, ids=ids)
class TestIdentityAndEdges:
    def test_eval_returns_input_unchanged(self, v: Variant) -> None:
        x = _input(v)
        out = v.call(x, 0.5, False, gen())
        assert torch.equal(out, _eval(v, x))
        if v.eval_fn is None:
            assert out is x

    def test_p_zero_returns_input_unchanged(self, v: Variant) -> None:
        x = _input(v)
        assert torch.equal(v.call(x, 0.0, True, gen()), _eval(v, x))

    @pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
    def test_a_call_that_does_not_draw_returns_any_dtype(self, v: Variant,
                                                         dtype: torch.dtype) -> None:
        # torch's dropout returns its input in eval or at p = 0, whatever its dtype
        if v.eval_fn is not None:
            pytest.skip("its eval output is a lookup, not the input")
        x = torch.ones(v.shape, dtype=dtype)
        assert v.call(x, 0.5, False, None) is x
        assert v.call(x, 0.0, True, None) is x

    def test_p_one_gives_zeros_and_zero_gradients_without_nan(self, v: Variant) -> None:
        if not v.p_one:
            with pytest.raises(ValueError, match=rf"^{v.name}: .*\[0, 1\)"):
                v.call(_input(v), 1.0, True, None)
            return
        x = _input(v, torch.float64)
        x.view(-1)[0] = math.inf  # 0 * inf would be NaN
        x.requires_grad_(True)
        out = v.call(x, 1.0, True, gen())
        assert torch.equal(out, torch.zeros_like(out))
        out.sum().backward()
        assert x.grad is not None
        assert torch.equal(x.grad, torch.zeros_like(x))

    def test_empty_input(self, v: Variant) -> None:
        # embedding_dropout: an empty weight has no rows to look up; its empty ids are
        # tested in test_embedding_dropout.py
        shape = (0, *v.shape[1:]) if v.eval_fn is None else v.shape
        x = torch.empty(shape) if v.eval_fn is None else _input(v)[:, :0]
        out = v.call(x, 0.5, True, gen())
        assert out.numel() == 0

    def test_same_generator_state_same_output(self, v: Variant) -> None:
        x = _input(v)
        a = v.call(x, 0.5, True, gen(3))
        b = v.call(x, 0.5, True, gen(3))
        c = v.call(x, 0.5, True, gen(4))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)

    def test_global_generator_follows_manual_seed(self, v: Variant) -> None:
        x = _input(v)
        torch.manual_seed(11)
        a = v.call(x, 0.5, True, None)
        torch.manual_seed(11)
        assert torch.equal(a, v.call(x, 0.5, True, None))


@pytest.mark.parametrize("v", VARIANTS, ids=ids)
class TestDtypeAndLayout:
    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
    def test_output_dtype_is_input_dtype(self, v: Variant, dtype: torch.dtype) -> None:
        out = v.call(_input(v, dtype), 0.3, True, gen())
        assert out.dtype == dtype
        assert torch.isfinite(out).all()

    def test_non_contiguous_slice_matches_contiguous_copy(self, v: Variant) -> None:
        big = _input(v).repeat_interleave(2, dim=-1)
        x = big[..., ::2]  # non-contiguous, same values as _input(v)
        assert not x.is_contiguous()
        assert torch.equal(v.call(x, 0.3, True, gen(5)), v.call(x.contiguous(), 0.3, True, gen(5)))


maps_input = [v for v in VARIANTS if v.eval_fn is None]  # output is a map of the input


@pytest.mark.parametrize("v", maps_input, ids=[v.name for v in maps_input])
def test_non_contiguous_dense_layout_is_kept(v: Variant) -> None:
    x = _input(v).transpose(0, -1)  # dense but not contiguous
    out = v.call(x, 0.3, True, gen())
    assert out.stride() == x.stride()


spatial = [v for v in VARIANTS if v.channels_last]


@pytest.mark.parametrize("v", spatial, ids=[v.name for v in spatial])
def test_channels_last_is_kept(v: Variant) -> None:
    fmt = torch.channels_last if len(v.shape) == 4 else torch.channels_last_3d
    x = _input(v).contiguous(memory_format=fmt)
    out = v.call(x, 0.3, True, gen())
    assert out.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("v", inverted, ids=[v.name for v in inverted])
class TestInvertedScaling:
    @pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
    def test_every_output_is_zero_or_input_over_keep(self, v: Variant, p: float) -> None:
        for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            x = _input(v, dtype)
            out = v.call(x, p, True, gen())
            kept = out != 0
            expected = (x.double() / (1 - p)).to(dtype)
            torch.testing.assert_close(out[kept], expected[kept])

    def test_gradient_is_mask_over_keep_times_incoming(self, v: Variant) -> None:
        p = 0.4
        x = _input(v, torch.float64).requires_grad_(True)
        out = v.call(x, p, True, gen(2))
        upstream = torch.randn(out.shape, generator=gen(9), dtype=torch.float64)
        (out * upstream).sum().backward()
        mask = (out != 0).double()
        torch.testing.assert_close(x.grad, mask / (1 - p) * upstream, rtol=0, atol=1e-15)


@pytest.mark.parametrize("v", VARIANTS, ids=ids)
def test_gradcheck_float64(v: Variant) -> None:
    x = _input(v, torch.float64).requires_grad_(True)
    # The generator is re-seeded inside, so every evaluation sees the same mask.
    assert torch.autograd.gradcheck(lambda t: v.call(t, 0.3, True, gen(7)), (x,))


@pytest.mark.parametrize("v", VARIANTS, ids=ids)
class TestVmap:
    """Monte Carlo dropout vectorizes samples with vmap(randomness="different")."""

    @pytest.mark.parametrize("use_generator", [False, True])
    def test_batched_input_gets_different_masks(self, v: Variant, use_generator: bool) -> None:
        x = _input(v)
        g = gen() if use_generator else None
        xs = x.expand(4, *x.shape)
        out = torch.func.vmap(lambda t: v.call(t, 0.5, True, g), randomness="different")(xs)
        assert out.shape[0] == 4
        assert not torch.equal(out[0], out[1])

    def test_unbatched_input_gets_different_masks(self, v: Variant) -> None:
        # The network before the first dropout runs once: dropout sees an unbatched tensor.
        torch.manual_seed(0)  # the global generator: two masks are equal by chance (rarely)
        x = _input(v)
        out = torch.func.vmap(lambda _: v.call(x, 0.5, True, None), randomness="different")(
            torch.arange(4)
        )
        assert out.shape[0] == 4
        assert not torch.equal(out[0], out[1])


@pytest.mark.parametrize("v", inverted, ids=[v.name for v in inverted])
def test_vmapped_masks_keep_inverted_scaling(v: Variant) -> None:
    torch.manual_seed(0)
    x = _input(v)
    out = torch.func.vmap(lambda _: v.call(x, 0.5, True, None), randomness="different")(
        torch.arange(64)
    )
    assert ((out == 0) | torch.isclose(out, 2 * x)).all()


@pytest.mark.parametrize("v", with_module, ids=[v.name for v in with_module])
class TestModule:
    def test_repr_shows_rate(self, v: Variant) -> None:
        assert "p=0.3" in repr(v.module(0.3))

    def test_repr_keeps_an_integer_rate_as_torch_does(self, v: Variant) -> None:
        if not v.p_one:
            pytest.skip("p = 1 is not a valid rate here")
        assert "p=1," in repr(v.module(1)) or repr(v.module(1)).endswith("p=1)")
        assert "p=0," in repr(v.module(0)) or repr(v.module(0)).endswith("p=0)")

    def test_eval_module_returns_an_integer_input(self, v: Variant) -> None:
        x = torch.arange(int(torch.tensor(v.shape).prod())).reshape(v.shape)
        assert v.module(0.5).eval()(x) is x

    def test_forward_is_the_function(self, v: Variant) -> None:
        x = _input(v)
        m = v.module(0.3, generator=gen(4))
        assert torch.equal(m(x), v.call(x, 0.3, True, gen(4)))
        m.eval()
        assert torch.equal(m(x), x)

    def test_bad_rate_assignment_is_rejected_and_rate_kept(self, v: Variant) -> None:
        m = v.module(0.3)
        with pytest.raises(ValueError, match=r"expected `p` to be a drop probability"):
            m.p = 1.5
        assert m.p == 0.3

    def test_deepcopy_and_state_dict(self, v: Variant) -> None:
        m = v.module(0.3, generator=gen(6))
        clone = copy.deepcopy(m)
        x = _input(v)
        assert torch.equal(m(x), clone(x))  # the generator's state is copied too
        fresh = v.module(0.3)
        fresh.load_state_dict(m.state_dict())
        assert fresh.p == m.p

    def test_compiles_fullgraph(self, v: Variant) -> None:
        torch._dynamo.reset()
        m = v.module(0.3)
        compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
        x = _input(v)
        out = compiled(x)
        assert out.shape == x.shape
        if v.inverted:
            assert ((out == 0) | torch.isclose(out, x / 0.7)).all()
        m.eval()
        assert torch.equal(compiled(x), x)


def test_dropout_compiles_with_inductor() -> None:
    # The default backend generates and compiles C++ for the CPU: the mask draw, the
    # scaling and the multiply must survive lowering, not only tracing.
    torch._dynamo.reset()
    m = dn.Dropout(0.3)
    compiled = torch.compile(m, fullgraph=True)
    x = torch.randn(64, 32) + 5.0  # no exact zeros
    out = compiled(x)
    assert ((out == 0) | torch.isclose(out, x / 0.7)).all()
    assert_binomial(int((out == 0).sum()), x.numel(), 0.3)
    m.eval()
    assert torch.equal(compiled(x), x)
