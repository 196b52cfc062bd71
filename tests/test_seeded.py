"""Seeded dropout: the Philox stream, the Triton kernels (interpreted) bit for bit against
the torch path, no mask memory, compile and vmap."""

from __future__ import annotations

import pytest
import torch

import dropkit.nn as dn
from conftest import assert_binomial, assert_mean, gen
from dropkit import seeded
from dropkit.seeded import ops, philox
from dropkit.seeded.philox import philox4x32

triton = pytest.importorskip("triton", reason="Triton is installed with the dev extra")


@pytest.fixture
def kernels_on_cpu(monkeypatch):
    monkeypatch.setattr(ops, "KERNELS_ON_CPU", True)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32 if t.element_size() == 4 else torch.int16)


def saved_bytes(fn) -> int:
    """Bytes autograd keeps for the backward pass of ``fn`` on 10,000 float32 elements."""
    total = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        total.append(t.numel() * t.element_size())
        return t

    x = torch.randn(10_000, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x).sum().backward()
    return sum(total)


class TestStream:
    @pytest.mark.parametrize("mul", ["_mul_hi_lo_wrap", "_mul_hi_lo_split"])
    def test_philox_known_answer(self, monkeypatch, mul) -> None:
        # Random123's known-answer vectors for philox4x32-10, with either 32x32-bit product
        monkeypatch.setattr(philox, "_mul_hi_lo", getattr(philox, mul))
        words = [int(w) for w in philox4x32(torch.tensor([0]), 0)]
        assert words == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]

    def test_wrapping_product_equals_the_split_one(self) -> None:
        counters = torch.randint(0, 2**62, (20_000,), generator=gen(3)) * 2 + 1  # to 2**63
        words = {}
        for mul in ("_mul_hi_lo_wrap", "_mul_hi_lo_split"):
            with pytest.MonkeyPatch.context() as m:
                m.setattr(philox, "_mul_hi_lo", getattr(philox, mul))
                words[mul] = philox4x32(counters, 2**64 - 5)
        for a, b in zip(*words.values(), strict=True):
            assert torch.equal(a, b)

    @pytest.mark.parametrize("seed, offset", [(0, 0), (7, 3), (2**40 + 5, 2**34 + 1),
                                              (2**62, 4 * (2**32 - 2) + 2), (2**64 - 3, 9)])
    def test_equals_triton_rand4x_bit_for_bit(self, seed: int, offset: int) -> None:
        import triton.language as tl

        @triton.jit
        def rand_kernel(out_ptr, seed, first, BLOCK: tl.constexpr):
            c = first + tl.arange(0, BLOCK).to(tl.int64)
            u0, u1, u2, u3 = tl.rand4x(seed, c)
            i = tl.arange(0, BLOCK)
            tl.store(out_ptr + 4 * i, u0)
            tl.store(out_ptr + 4 * i + 1, u1)
            tl.store(out_ptr + 4 * i + 2, u2)
            tl.store(out_ptr + 4 * i + 3, u3)

        first = offset // 4
        out = torch.empty(4 * 64)
        rand_kernel[(1,)](out, seed, first, BLOCK=64)
        ours = seeded.uniform(4 * 64, seed=seed, offset=4 * first)
        assert torch.equal(_bits(out), _bits(ours))  # counters past 2**32 included

    def test_offset_addresses_the_same_stream(self) -> None:
        full = seeded.uniform(103, seed=11)
        for k in (1, 2, 3, 4, 37):
            assert torch.equal(seeded.uniform(103 - k, seed=11, offset=k), full[k:])

    @pytest.mark.parametrize("offset", [0, 1, 7])
    def test_chunks_join_into_one_stream(self, monkeypatch, offset) -> None:
        whole = seeded.uniform(1001, seed=6, offset=offset)  # one chunk
        monkeypatch.setattr(philox, "CPU_CHUNK", 3)  # 12 elements a chunk
        assert torch.equal(seeded.uniform(1001, seed=6, offset=offset), whole)

    def test_range_and_rate(self) -> None:
        u = seeded.uniform(400_000, seed=1)
        assert 0 <= u.min() and u.max() < 1
        assert_binomial(int((u < 0.3).sum()), u.numel(), 0.3)

    def test_lanes_and_neighbours_are_independent(self) -> None:
        q, n = 0.5, 400_000
        kept = seeded.uniform(n, seed=5) >= q
        lanes = kept.view(-1, 4)
        for a, b in [(0, 1), (1, 2), (2, 3), (0, 3)]:  # lanes of one Philox call
            assert_binomial(int((lanes[:, a] & lanes[:, b]).sum()), len(lanes), q * q)
        across = lanes[:-1, 3] & lanes[1:, 0]  # last lane of a call, first of the next
        assert_binomial(int(across.sum()), len(across), q * q)


@pytest.mark.usefixtures("kernels_on_cpu")
class TestKernelsAgainstTorch:
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
    @pytest.mark.parametrize("n, offset", [(4096 * 2 + 5, 0), (1000, 3), (37, 2**33 + 1)])
    def test_dropout_bit_for_bit(self, monkeypatch, dtype, n, offset) -> None:
        x = torch.randn(n, dtype=torch.float32).to(dtype)
        kernel = seeded.dropout(x, 0.3, seed=123, offset=offset)
        monkeypatch.setattr(ops, "KERNELS_ON_CPU", False)
        reference = seeded.dropout(x, 0.3, seed=123, offset=offset)
        assert torch.equal(kernel == 0, reference == 0)  # the mask, bit for bit
        if dtype == torch.bfloat16:
            # Triton's interpreter has no bfloat16 and truncates float32 to it; the GPU
            # rounds to nearest even like torch (benchmarks/gpu_check.py checks the bits
            # there). Here: equal up to that last bit.
            diff = (_bits(kernel).int() - _bits(reference).int()).abs()
            assert diff.max() <= 1
        else:
            assert torch.equal(_bits(kernel), _bits(reference))

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    def test_alpha_dropout_bit_for_bit(self, monkeypatch, dtype) -> None:
        # the affine branch: product and sum rounded apart, as the torch path does
        x = torch.randn(4096 + 9).to(dtype)
        kernel = seeded.alpha_dropout(x, 0.3, seed=21, offset=2)
        monkeypatch.setattr(ops, "KERNELS_ON_CPU", False)
        reference = seeded.alpha_dropout(x, 0.3, seed=21, offset=2)
        assert torch.equal(_bits(kernel), _bits(reference))

    def test_bias_dropout_add_bit_for_bit(self, monkeypatch) -> None:
        x, r = torch.randn(7, 33, 48), torch.randn(7, 33, 48)
        b = torch.randn(48)
        kernel = seeded.bias_dropout_add(x, b, r, 0.2, seed=9, offset=5)
        monkeypatch.setattr(ops, "KERNELS_ON_CPU", False)
        reference = seeded.bias_dropout_add(x, b, r, 0.2, seed=9, offset=5)
        assert torch.equal(kernel, reference)

    @pytest.mark.parametrize("op", ["dropout", "alpha_dropout"])
    @pytest.mark.parametrize("n, offset", [(4096 + 5, 0), (37, 2**33 + 1)])
    def test_a_seed_in_device_memory_gives_the_same_bits(self, monkeypatch, op, n, offset
                                                          ) -> None:
        # a CUDA graph's capture draws the seed on the GPU and the kernel reads it there
        # (the seeds kernel with one sample); forced here on the CPU's interpreted kernels
        x = torch.randn(n)
        as_argument = getattr(seeded, op)(x, 0.3, seed=2**64 - 5, offset=offset)
        monkeypatch.setattr(ops, "_seed_in_device_memory", lambda seed, x: True)
        in_memory = getattr(seeded, op)(x, 0.3, seed=torch.tensor(-5), offset=offset)
        assert torch.equal(_bits(in_memory), _bits(as_argument))

    def test_a_seed_past_2_63_is_the_same_key_on_both_paths(self, monkeypatch) -> None:
        x = torch.randn(1000)
        kernel = seeded.dropout(x, 0.5, seed=2**64 - 3)  # passed to Triton as int64 bits
        monkeypatch.setattr(ops, "KERNELS_ON_CPU", False)
        assert torch.equal(kernel, seeded.dropout(x, 0.5, seed=2**64 - 3))
        assert torch.equal(kernel, seeded.dropout(x, 0.5, seed=torch.tensor(-3)))
        assert not torch.equal(kernel, seeded.dropout(x, 0.5, seed=2**63 - 3))

    @pytest.mark.parametrize("h, offset", [(4 * ops.BLOCK, 0), (4 * ops.BLOCK, 8),
                                           (2 * 4 * ops.BLOCK, 2), (4 * ops.BLOCK + 4, 0)])
    def test_bias_columns_with_and_without_row_crossing_tiles(self, monkeypatch, h,
                                                              offset) -> None:
        from dropkit.seeded import kernels

        x, r = torch.randn(3, h), torch.randn(3, h)
        b = torch.randn(h)
        crosses = kernels.tile_crosses_rows(h, offset, ops.BLOCK)
        assert crosses == (h % (4 * ops.BLOCK) != 0 or offset % 4 != 0)
        kernel = seeded.bias_dropout_add(x, b, r, 0.2, seed=9, offset=offset)
        monkeypatch.setattr(ops, "KERNELS_ON_CPU", False)
        assert torch.equal(kernel, seeded.bias_dropout_add(x, b, r, 0.2, seed=9, offset=offset))

    @pytest.mark.parametrize("shared", [True, False])
    @pytest.mark.parametrize("alpha", [False, True])
    def test_vmap_over_seeds_is_one_launch_with_the_bits_of_a_loop(self, monkeypatch, shared,
                                                                   alpha) -> None:
        # MC dropout's seeded samples: vmap over per-sample seeds takes the seeds kernel
        # (the per-call kernel is never launched) and gives the torch path's bits
        from dropkit.seeded import kernels

        fn = seeded.alpha_dropout if alpha else seeded.dropout
        seeds = torch.tensor([1, 2, -3, 2**62, 7])
        x = torch.randn(4096 + 11, generator=gen(2))
        xs = x.expand(5, -1) if shared else torch.randn(5, 4096 + 11, generator=gen(3))
        monkeypatch.setattr(kernels, "mask_affine_kernel", None)  # used: TypeError
        out = torch.func.vmap(lambda t, s: fn(t, 0.3, seed=s, offset=3),
                              in_dims=(None if shared else 0, 0))(x if shared else xs, seeds)
        monkeypatch.setattr(ops, "KERNELS_ON_CPU", False)
        reference = torch.stack([fn(xs[b], 0.3, seed=seeds[b], offset=3) for b in range(5)])
        assert torch.equal(_bits(out), _bits(reference))

    def test_vmap_over_seeds_gradients_and_nested_vmap(self, monkeypatch) -> None:
        xs, seeds = torch.randn(3, 600, generator=gen(5)), torch.tensor([11, 12, 13])

        def loss(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return (seeded.dropout(t, 0.5, seed=s) * t).sum()

        batched = torch.func.vmap(torch.func.grad(loss))(xs, seeds)
        nested = torch.func.vmap(torch.func.vmap(lambda t, s: seeded.dropout(t, 0.5, seed=s)))(
            xs.expand(2, 3, 600), seeds.expand(2, 3))
        monkeypatch.setattr(ops, "KERNELS_ON_CPU", False)
        assert torch.equal(batched, torch.stack([torch.func.grad(loss)(xs[b], seeds[b])
                                                 for b in range(3)]))
        assert torch.equal(nested[1], torch.stack([seeded.dropout(xs[b], 0.5, seed=seeds[b])
                                                   for b in range(3)]))

    def test_kernel_backward_is_the_same_mask(self) -> None:
        x = torch.randn(3000, requires_grad=True)
        y = seeded.dropout(x, 0.4, seed=4)
        y.backward(torch.ones_like(y))
        assert torch.equal(x.grad, (y != 0).float() / 0.6)

    def test_non_contiguous_input(self) -> None:
        x = torch.randn(40, 30).t()
        assert torch.equal(seeded.dropout(x, 0.5, seed=1), seeded.dropout(x.contiguous(), 0.5,
                                                                            seed=1))


class TestDropout:
    def test_inverted_scaling_and_rate(self) -> None:
        x = torch.rand(200_000) + 0.5
        y = seeded.dropout(x, 0.25, seed=3)
        kept = y != 0
        torch.testing.assert_close(y[kept], x[kept] / 0.75)
        assert_binomial(int((~kept).sum()), x.numel(), 0.25)

    def test_kept_negative_zero_stays_negative_zero(self) -> None:
        y = seeded.dropout(torch.full((64,), -0.0), 0.5, seed=1)
        kept = seeded.dropout(torch.ones(64), 0.5, seed=1) != 0
        assert torch.signbit(y[kept]).all()  # -0.0 * scale, as torch's x * mask * scale

    def test_same_seed_same_mask_other_seed_other_mask(self) -> None:
        x = torch.ones(1000)
        assert torch.equal(seeded.dropout(x, 0.5, seed=1), seeded.dropout(x, 0.5, seed=1))
        assert not torch.equal(seeded.dropout(x, 0.5, seed=1), seeded.dropout(x, 0.5, seed=2))

    def test_gradient_and_gradcheck(self) -> None:
        x = torch.randn(50, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: seeded.dropout(t, 0.3, seed=8), (x,))

    def test_nothing_per_element_is_saved_for_backward(self) -> None:
        assert saved_bytes(lambda t: seeded.dropout(t, 0.5, seed=1)) == 0
        assert saved_bytes(lambda t: torch.nn.functional.dropout(t, 0.5)) >= 10_000  # a mask

    def test_bias_dropout_add_equals_its_definition_and_grads(self) -> None:
        x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
        b = torch.randn(6, dtype=torch.float64, requires_grad=True)
        r = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
        fused = seeded.bias_dropout_add(x, b, r, 0.3, seed=2)
        torch.testing.assert_close(fused, r + seeded.dropout(x + b, 0.3, seed=2))
        assert torch.autograd.gradcheck(
            lambda x, b, r: seeded.bias_dropout_add(x, b, r, 0.3, seed=2), (x, b, r))

    def test_eval_p_zero_and_p_one(self) -> None:
        x = torch.randn(10)
        assert seeded.dropout(x, 0.5, training=False, seed=1) is x
        assert seeded.dropout(x, 0.0, seed=1) is x
        assert torch.equal(seeded.dropout(x, 1.0, seed=1), torch.zeros(10))

    @pytest.mark.parametrize(
        "kwargs, message",
        [({"seed": -1}, "seed"), ({"seed": 2**64}, "seed"), ({"seed": 1, "offset": -2}, "offset"),
         ({"seed": torch.tensor(1.0)}, "seed")],
    )
    def test_bad_arguments(self, kwargs, message) -> None:
        with pytest.raises(ValueError, match=rf"^seeded.dropout: expected `{message}`"):
            seeded.dropout(torch.ones(3), 0.5, **kwargs)

    def test_the_input_is_named_as_in_functional(self) -> None:
        # one name across dropkit.functional and dropkit.seeded: `input`, as torch's
        with pytest.raises(TypeError, match=r"^seeded.dropout: expected a floating-point "
                                            r"`input`"):
            seeded.dropout(input=torch.ones(3, dtype=torch.long), p=0.5, seed=1)
        ids = torch.arange(3)
        assert seeded.dropout(ids, 0.5, False, seed=1) is ids  # no draw: any dtype

    def test_bias_shape(self) -> None:
        with pytest.raises(ValueError, match=r"expected x \(..., H\), bias \(H,\)"):
            seeded.bias_dropout_add(torch.ones(2, 3), torch.ones(4), torch.ones(2, 3), 0.1,
                                    seed=1)


class TestAlphaDropout:
    def test_kept_and_dropped_values_and_rate(self) -> None:
        from dropkit.functional.alpha_dropout import SELU_ALPHA_PRIME, alpha_affine

        x = torch.randn(200_000, generator=gen(1))
        y = seeded.alpha_dropout(x, 0.2, seed=3)
        a, b = alpha_affine(0.2)
        kept = seeded.dropout(torch.ones_like(x), 0.2, seed=3) != 0  # the same mask
        assert torch.equal(y[kept], x[kept] * a + b)
        assert torch.equal(y[~kept], torch.full_like(y[~kept], a * SELU_ALPHA_PRIME + b))
        assert_binomial(int((~kept).sum()), x.numel(), 0.2)
        assert_mean(y, 0.0, 1.0)  # self-normalizing: standard-normal in, mean 0 out

    def test_gradient_is_a_where_kept(self) -> None:
        x = torch.randn(40, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: seeded.alpha_dropout(t, 0.4, seed=8), (x,))

    def test_eval_p_zero_p_one_and_errors(self) -> None:
        x = torch.randn(10)
        assert seeded.alpha_dropout(x, 0.5, training=False, seed=1) is x
        assert seeded.alpha_dropout(x, 0.0, seed=1) is x
        assert torch.equal(seeded.alpha_dropout(x, 1.0, seed=1), torch.zeros(10))
        with pytest.raises(ValueError, match=r"^seeded.alpha_dropout: expected `seed`"):
            seeded.alpha_dropout(x, 0.5, seed=-3)

    def test_nothing_per_element_is_saved_and_vmap_is_per_sample(self) -> None:
        assert saved_bytes(lambda t: seeded.alpha_dropout(t, 0.5, seed=1)) == 0
        out = torch.func.vmap(lambda t: seeded.alpha_dropout(t, 0.5, seed=1),
                              randomness="different")(torch.ones(2, 300))
        assert torch.equal(out.reshape(-1), seeded.alpha_dropout(torch.ones(600), 0.5, seed=1))


class TestTransforms:
    def test_compiled_equals_eager(self) -> None:
        x = torch.randn(64, 32)
        seed = torch.tensor(77)
        compiled = torch.compile(lambda t, s: seeded.dropout(t, 0.4, seed=s), fullgraph=True,
                                 backend="aot_eager")
        assert torch.equal(compiled(x, seed), seeded.dropout(x, 0.4, seed=seed))

    @pytest.mark.slow
    def test_inductor_forward_and_backward_equal_eager(self) -> None:
        # the default backend lowers the graph around the ops to C++: the custom ops must
        # survive that, and their backward (regenerated masks) must match eager's
        torch._dynamo.reset()

        def f(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return seeded.alpha_dropout(seeded.dropout(t * 2.0, 0.3, seed=s), 0.2, seed=s,
                                        offset=5)

        x = torch.randn(32, 16, requires_grad=True)
        seed = torch.tensor(41)
        compiled = torch.compile(f, fullgraph=True)
        out = compiled(x, seed)
        (grad,) = torch.autograd.grad(out.sum(), x)
        out_eager = f(x, seed)
        (grad_eager,) = torch.autograd.grad(out_eager.sum(), x)
        assert torch.equal(out, out_eager)  # t * 2.0 is exact, the ops are opaque: same bits
        assert torch.equal(grad, grad_eager)

    def test_func_grad_equals_autograd(self) -> None:
        x, w = torch.randn(50, generator=gen(3)), torch.randn(50, generator=gen(4))

        def f(t: torch.Tensor) -> torch.Tensor:
            return (seeded.alpha_dropout(seeded.dropout(t, 0.3, seed=5), 0.2, seed=6) * w).sum()

        leaf = x.clone().requires_grad_(True)
        f(leaf).backward()
        assert torch.equal(torch.func.grad(f)(x), leaf.grad)
        b, r = torch.randn(10), torch.randn(5, 10)
        g = torch.func.grad(lambda t: (seeded.bias_dropout_add(t, b, r, 0.5, seed=2) * r).sum())
        assert torch.equal(g(torch.randn(5, 10)), seeded.dropout(r, 0.5, seed=2))

    def test_eager_calls_skip_the_custom_op_and_match_the_transform_path(self,
                                                                        monkeypatch) -> None:
        # plain eager calls (with or without autograd) go straight to the computation;
        # transforms and the compiler take the custom op: the same values and gradients
        x, b, r = (torch.randn(6, 10, generator=gen(i)) for i in range(3))
        b = b[0]
        w = torch.randn(6, 10, generator=gen(9))

        def loss(t: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            h = seeded.alpha_dropout(seeded.dropout(t, 0.3, seed=5), 0.2, seed=6)
            return (seeded.bias_dropout_add(h, bias, r, 0.4, seed=7) * w).sum()

        want = torch.func.grad(loss, argnums=(0, 1))(x, b)  # the custom ops
        with torch.no_grad():
            value = loss(x, b)
        leaves = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
        monkeypatch.setattr(ops, "_mask_affine_fwd", None)  # used: TypeError
        monkeypatch.setattr(ops, "_bias_dropout_add_fwd", None)
        with torch.no_grad():
            assert torch.equal(loss(x, b), value)
        out = loss(*leaves)
        out.backward()
        assert torch.equal(out.detach(), value)
        assert torch.equal(leaves[0].grad, want[0]) and torch.equal(leaves[1].grad, want[1])
        with pytest.raises(TypeError):
            torch.func.grad(loss)(x, b)

    def test_per_sample_gradients_with_vmap_of_grad(self) -> None:
        # per-sample gradients (as DP-SGD computes them) through seeded dropout: vmap over
        # samples and their seeds of grad equals a loop of per-sample grads
        xs, seeds = torch.randn(3, 40, generator=gen(5)), torch.tensor([11, 12, 13])

        def loss(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return (seeded.dropout(t, 0.5, seed=s) * t).sum()

        batched = torch.func.vmap(torch.func.grad(loss))(xs, seeds)
        looped = torch.stack([torch.func.grad(loss)(xs[b], seeds[b]) for b in range(3)])
        assert torch.equal(batched, looped)
        assert (batched == 0).any() and not torch.equal(batched[0] == 0, batched[1] == 0)

    def test_vmap_different_gives_per_sample_masks(self) -> None:
        x = torch.ones(3, 500)
        out = torch.func.vmap(lambda t: seeded.dropout(t, 0.5, seed=1),
                              randomness="different")(x)
        assert not torch.equal(out[0], out[1])
        # sample b continues the stream where sample b - 1 ended
        assert torch.equal(out.reshape(-1), seeded.dropout(torch.ones(1500), 0.5, seed=1))

    def test_vmap_same_gives_one_mask(self) -> None:
        out = torch.func.vmap(lambda t: seeded.dropout(t, 0.5, seed=1), randomness="same")(
            torch.ones(3, 50))
        assert torch.equal(out[0], out[1])

    def test_vmap_over_seeds(self) -> None:
        seeds = torch.tensor([1, 2, 3])
        out = torch.func.vmap(lambda s: seeded.dropout(torch.ones(100), 0.5, seed=s))(seeds)
        assert torch.equal(out[1], seeded.dropout(torch.ones(100), 0.5, seed=2))


def _elementwise_modules(backend: str, generator: torch.Generator | None = None):
    """One module per variant with the backend switch, each with its seeded function."""
    return {
        "Dropout": dn.Dropout(0.5, backend=backend, generator=generator),
        "AlphaDropout": dn.AlphaDropout(0.5, backend=backend, generator=generator),
        "DropConnectLinear": dn.DropConnectLinear(8, 8, p=0.5, backend=backend,
                                                  generator=generator),
        "DropConnect": dn.DropConnect(torch.nn.Linear(8, 8), 0.5, backend=backend,
                                      generator=generator),
    }


NAMES = list(_elementwise_modules("auto"))


class TestModuleBackend:
    @pytest.mark.parametrize("name", NAMES)
    def test_seeded_module_follows_manual_seed_and_generator(self, name) -> None:
        torch.manual_seed(5)
        m = _elementwise_modules("seeded")[name]
        x = torch.ones(16, 8)
        torch.manual_seed(0)
        a = m(x)
        torch.manual_seed(0)
        assert torch.equal(a, m(x))
        assert not torch.equal(a, m(x))  # a fresh seed per call
        torch.manual_seed(5)
        g = _elementwise_modules("seeded", torch.Generator().manual_seed(4))[name]
        torch.manual_seed(5)
        h = _elementwise_modules("seeded", torch.Generator().manual_seed(4))[name]
        assert torch.equal(g(x), h(x))

    @pytest.mark.parametrize("name", NAMES)
    def test_seeded_module_calls_its_seeded_function(self, name) -> None:
        torch.manual_seed(5)
        m = _elementwise_modules("seeded", torch.Generator().manual_seed(4))[name]
        torch.manual_seed(5)
        torch_backend = _elementwise_modules("torch")[name]
        x = torch.randn(16, 8, generator=gen(2))
        seed = seeded.new_seed(torch.Generator().manual_seed(4))
        if name == "Dropout":
            expect = seeded.dropout(x, 0.5, seed=seed)
        elif name == "AlphaDropout":
            expect = seeded.alpha_dropout(x, 0.5, seed=seed)
        else:  # the weight is dropped with the seeded mask, the bias is not
            linear = getattr(torch_backend, "module", torch_backend)
            expect = torch.nn.functional.linear(
                x, seeded.dropout(linear.weight, 0.5, seed=seed), linear.bias)
        assert torch.equal(m(x), expect)
        m.eval()
        torch_backend.eval()
        assert torch.equal(m(x), torch_backend(x))  # eval: no noise, both backends alike

    @pytest.mark.parametrize("cls", [dn.Dropout, dn.AlphaDropout])
    def test_seeded_inplace_writes_into_the_input(self, cls) -> None:
        x = torch.randn(64, generator=gen(1))
        grads, outs = [], []
        for inplace in (False, True):
            w = x.clone().requires_grad_(True)
            h = w * 1.0  # a non-leaf: in place is allowed, as with torch's inplace dropout
            torch.manual_seed(0)
            out = cls(0.5, inplace=inplace, backend="seeded")(h)
            assert (out is h) == inplace
            (out * x).sum().backward()  # the regenerated mask flows back through the copy
            grads.append(w.grad)
            outs.append(out.detach())
        assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0], grads[1])
        assert (grads[1] == 0).any()  # some elements were dropped

    def test_seeded_drop_connect_keeps_no_weight_mask(self) -> None:
        x = torch.randn(4, 256)
        kept: dict[str, list[int]] = {}
        for backend in ("torch", "seeded"):
            m = dn.DropConnectLinear(256, 512, p=0.5, backend=backend)
            sizes = kept.setdefault(backend, [])
            with torch.autograd.graph.saved_tensors_hooks(
                    lambda t, sizes=sizes: sizes.append(t.numel()) or t, lambda t: t):
                m(x).sum().backward()
        assert kept["seeded"] == [x.numel()]  # only the input, for the weight's gradient
        assert 256 * 512 in kept["torch"]  # a weight-sized mask

    def test_seeded_rowwise_drop_connect_drops_rows(self) -> None:
        m = dn.DropConnectLinear(50, 400, bias=False, p=0.3, rowwise=True, backend="seeded")
        torch.manual_seed(1)
        w = m._drop(m.weight)
        dropped = (w == 0).all(dim=1)  # (400,): a whole row or nothing
        assert torch.equal((w != 0).all(dim=1), ~dropped)
        torch.testing.assert_close(w[~dropped], m.weight[~dropped] / 0.7)
        assert_binomial(int(dropped.sum()), 400, 0.3)

    @pytest.mark.parametrize("name", NAMES)
    def test_mc_predict_draws_per_sample_masks(self, name) -> None:
        import dropkit

        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 8), _elementwise_modules("seeded")[name])
        out = dropkit.mc_predict(model, torch.randn(4, 8), 6, strategy="vmap")
        assert not torch.equal(out[0], out[1])

    def test_auto_is_torch_on_cpu_and_bad_backend(self) -> None:
        for m in _elementwise_modules("auto").values():
            assert not m._seeded(torch.ones(2))
            assert m.backend == dn.Dropout(0.5).backend == "auto"  # the default
            assert "backend" not in repr(m)
        for m in _elementwise_modules("torch").values():
            assert "backend='torch'" in repr(m)
        for name, m in _elementwise_modules("seeded").items():
            assert "backend='seeded'" in repr(m), name
        with pytest.raises(ValueError, match=r"^Dropout: expected `backend`"):
            dn.Dropout(0.5, backend="cuda")
        with pytest.raises(ValueError, match=r"^DropConnectLinear: expected `backend` to be one"):
            dn.DropConnectLinear(2, 2, backend="triton")

    @pytest.mark.parametrize("name", ["Dropout", "AlphaDropout", "DropConnectLinear"])
    def test_compiles_fullgraph(self, name) -> None:
        torch._dynamo.reset()
        m = _elementwise_modules("seeded")[name]
        x = torch.ones(4, 8)
        torch.manual_seed(3)
        out = torch.compile(m, fullgraph=True, backend="aot_eager")(x)
        torch.manual_seed(3)
        assert torch.equal(out, m(x))  # the same seed draw, the same mask

    def test_rank_enters_the_seed(self, monkeypatch) -> None:
        dist = torch.distributed
        seed = torch.tensor(12345)
        assert torch.equal(seeded.rank_seed(seed), seed)  # no process group
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        seeds = []
        for rank in (0, 1, 2):
            monkeypatch.setattr(dist, "get_rank", lambda r=rank: r)
            seeds.append(int(seeded.rank_seed(seed)))
        assert seeds[0] == 12345 and len(set(seeds)) == 3
        assert all(0 <= s < 2**62 for s in seeds)

    def test_seed_per_rank_switch(self, monkeypatch) -> None:
        dist = torch.distributed
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        outs = {}
        for per_rank in (True, False):
            for rank in (0, 1):
                monkeypatch.setattr(dist, "get_rank", lambda r=rank: r)
                m = dn.Dropout(0.5, backend="seeded", seed_per_rank=per_rank,
                               generator=torch.Generator().manual_seed(1))
                outs[per_rank, rank] = m(torch.ones(200))
        assert not torch.equal(outs[True, 0], outs[True, 1])  # data parallel: own masks
        assert torch.equal(outs[False, 0], outs[False, 1])  # tensor parallel: one mask


@pytest.mark.slow
def test_gpu_check_script_runs(tmp_path) -> None:
    """The GPU script's own code, run on the CPU in smoke mode, so a GPU session is not
    spent finding a typo; without a GPU and without --smoke it exits saying so."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "benchmarks" / "gpu_check.py"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    smoke = subprocess.run([sys.executable, str(script), "--smoke", "--sweep"],
                           capture_output=True, text=True, timeout=300, env=env)
    assert smoke.returncode == 0, smoke.stderr[-2000:]
    assert "all equal" in smoke.stdout and "saved for backward (bytes/element)" in smoke.stdout
    assert "targets: seeded forward at" in smoke.stdout and "| BLOCK (counters) |" in smoke.stdout
    assert "a measurement failed" not in smoke.stderr  # every row of the table was measured
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           timeout=120)
    if not torch.cuda.is_available():
        assert plain.returncode == 0 and "no CUDA GPU is reachable" in plain.stdout


class TestNonFiniteInputs:
    """A dropped NaN or Inf gives NaN, as torch's ``x * mask`` does (and dropkit's torch
    backend): NaN propagation must not depend on which backend ``auto`` takes."""

    @staticmethod
    def _poisoned() -> torch.Tensor:
        x = torch.randn(4096 + 7, generator=gen(3))
        x[::5] = float("nan")
        x[1::7] = float("inf")
        x[2::11] = float("-inf")
        return x

    @pytest.mark.parametrize("path", ["reference", "kernel"])
    @pytest.mark.parametrize("op", ["dropout", "alpha_dropout", "bias_dropout_add"])
    def test_like_torch(self, monkeypatch, path: str, op: str) -> None:
        monkeypatch.setattr(ops, "KERNELS_ON_CPU", path == "kernel")
        x = self._poisoned()
        if op == "bias_dropout_add":
            out = seeded.bias_dropout_add(x.view(-1, 1), torch.zeros(1), torch.zeros(x.numel(), 1),
                                          0.4, seed=7).flatten()
        else:
            out = getattr(seeded, op)(x, 0.4, seed=7)
        dropped = seeded.uniform(x.numel(), seed=7) < 0.4  # the mask the ops draw
        finite = torch.isfinite(x)
        # every non-finite input is non-finite out, dropped or kept (dropped: NaN)
        assert not torch.isfinite(out[~finite]).any()
        assert out[~finite & dropped].isnan().all()
        assert torch.isfinite(out[finite]).all()
        # torch's own dropout on the same input: the same non-finite positions
        ref = torch.nn.functional.dropout(x, 0.4, True)
        assert torch.equal(~torch.isfinite(ref), ~finite)

    def test_a_dropped_negative_is_minus_zero_as_in_torch(self, monkeypatch) -> None:
        x = -torch.rand(4096, generator=gen(4)) - 0.5
        for path in (False, True):
            monkeypatch.setattr(ops, "KERNELS_ON_CPU", path)
            out = seeded.dropout(x, 0.5, seed=1)
            zeros = out == 0
            assert zeros.any() and torch.signbit(out[zeros]).all()
