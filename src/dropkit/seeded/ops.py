"""Seeded dropout ops: masks recomputed from (seed, offset), never stored.

The forward computations are ``torch.library`` custom ops with fake kernels, opaque to
``torch.compile(fullgraph=True)``; their autograd and vmap rules live in
``torch.autograd.Function`` wrappers, so ``torch.func.grad``, ``vmap`` and their
compositions (per-sample gradients) work too.
CUDA tensors (fp32, fp16, bf16) go to the Triton kernels; everything else to the
vectorized torch Philox, which produces the same bits.
"""

from __future__ import annotations

import os
from typing import Any, TypeGuard

import torch
from torch import Tensor

from dropkit._torch_compat import functorch_interpreter_idle
from dropkit._triton import HAS_TRITON
from dropkit.seeded.philox import uniform

__all__ = ["mask_affine_op", "dropout_op", "bias_dropout_add_op", "keep_mask", "HAS_TRITON"]

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Counters per program (4 elements each), with Triton's default 4 warps: the fastest of
# benchmarks/gpu_check.py --sweep's launch configurations on an H100 (BENCHMARKS.md).
# The bits do not depend on it.
BLOCK = 256


# With TRITON_INTERPRET=1 set before Triton is imported, CPU tensors can run the kernels in
# Triton's interpreter: the tests switch this on to compare them with the torch Philox.
KERNELS_ON_CPU = os.environ.get("DROPKIT_TRITON_ON_CPU") == "1"


def _use_kernel(x: Tensor) -> bool:
    if not HAS_TRITON or x.dtype not in _KERNEL_DTYPES:
        return False
    return x.is_cuda or (x.device.type == "cpu" and KERNELS_ON_CPU)


def _scale(p: float) -> float:
    return 0.0 if p >= 1.0 else 1.0 / (1.0 - p)


def keep_mask(n: int, p: float, seed: int, offset: int, device: torch.device) -> Tensor:
    """Which of elements 0..n-1 are kept: uniform >= p (the kernels' rule)."""
    return uniform(n, seed=seed, offset=offset, device=device) >= p


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _seed_in_device_memory(seed: int | Tensor, x: Tensor) -> TypeGuard[Tensor]:
    """Whether the kernel reads ``seed`` from the memory of ``x``'s GPU rather than as an
    argument from the host (a CPU seed, the eager case, is passed as an argument)."""
    return isinstance(seed, Tensor) and seed.device == x.device and x.device.type != "cpu"


def _mask_affine_impl(x: Tensor, p: float, seed: int | Tensor, offset: int, scale: float,
                      shift: float, fill: float) -> Tensor:
    """The op on ``x``; ``seed`` an int, or a 0-dim int64 tensor: read on the host, unless
    it lives on the kernel's device, where the kernel reads it from memory (a CUDA graph's
    capture draws it there, so that every replay draws a new one)."""
    xc = x.contiguous()
    affine = shift != 0.0 or fill != 0.0
    if _use_kernel(xc):
        from dropkit.seeded import kernels

        out = torch.empty_like(xc)
        n = xc.numel()
        if n and _seed_in_device_memory(seed, xc):
            # the seeds kernel with one sample: the bits of the launch below
            (programs,) = kernels.grid(n, offset, BLOCK)
            kernels.mask_affine_seeds_kernel[(programs, 1)](
                xc, out, seed.reshape(1), n, 0, p, scale, shift, fill, offset, BLOCK=BLOCK,
                AFFINE=affine, **kernels.LAUNCH)
        elif n:
            kernels.mask_affine_kernel[kernels.grid(n, offset, BLOCK)](
                xc, out, n, p, scale, shift, fill, int(seed), offset, BLOCK=BLOCK,
                AFFINE=affine, **kernels.LAUNCH)
        return out.view(x.shape)
    keep = keep_mask(xc.numel(), p, int(seed), offset, xc.device).view(x.shape)
    xd = xc.to(_compute_dtype(xc))
    y = xd * scale  # rounded like the kernel: product, then sum
    dropped = xd * 0.0  # as torch's x * mask: NaN and Inf give NaN, a negative -0.0
    if affine:
        y = y + shift
        dropped = dropped + fill
    return torch.where(keep, y, dropped).to(x.dtype)


MAX_SAMPLES_PER_LAUNCH = 65535  # CUDA's limit on grid axis 1


def _mask_affine_seeds_impl(xs: Tensor, p: float, seeds: Tensor, offset: int, scale: float,
                            shift: float, fill: float) -> Tensor:
    """Sample s of ``xs`` (S, ...) through the op with ``seeds[s]``: the bits of S calls.

    A shared input (``xs`` expanded from one tensor, stride 0 along samples) is read in
    place; on the kernel path all S samples take one launch.
    """
    size = xs.shape[0]
    if not (_use_kernel(xs) and 0 < size <= MAX_SAMPLES_PER_LAUNCH):
        return torch.stack([_mask_affine_impl(xs[s], p, int(seeds[s]), offset, scale, shift,
                                              fill) for s in range(size)])
    from dropkit.seeded import kernels

    shared = xs.stride(0) == 0 and xs[0].is_contiguous()
    xc = xs[0] if shared else xs.contiguous()
    n = xs[0].numel()
    out = torch.empty(xs.shape, dtype=xs.dtype, device=xs.device)
    if n:
        (programs,) = kernels.grid(n, offset, BLOCK)
        kernels.mask_affine_seeds_kernel[(programs, size)](
            xc, out, seeds.to(device=xs.device, dtype=torch.int64).contiguous(), n,
            0 if shared else n, p, scale, shift, fill, offset, BLOCK=BLOCK,
            AFFINE=shift != 0.0 or fill != 0.0, **kernels.LAUNCH)
    return out


def _bias_dropout_add_impl(x: Tensor, bias: Tensor, residual: Tensor, p: float, seed: int,
                           offset: int) -> Tensor:
    xc, rc, bc = x.contiguous(), residual.contiguous(), bias.contiguous()
    h = bc.numel()
    if _use_kernel(xc) and h < 2**31 - 8 * BLOCK:  # columns in int32, a tile's span added
        from dropkit.seeded import kernels

        out = torch.empty_like(xc)
        n = xc.numel()
        if n:
            kernels.bias_dropout_add_kernel[kernels.grid(n, offset, BLOCK)](
                xc, bc, rc, out, n, h, p, _scale(p), seed, offset, BLOCK=BLOCK,
                WRAP=kernels.tile_crosses_rows(h, offset, BLOCK), **kernels.LAUNCH)
        return out.view(x.shape)
    keep = keep_mask(xc.numel(), p, seed, offset, xc.device).view(x.shape)
    dt = _compute_dtype(xc)
    v = xc.to(dt) + bc.to(dt)
    dropped = torch.where(keep, v * _scale(p), v * 0.0)  # a dropped NaN stays NaN
    return (rc.to(dt) + dropped).to(x.dtype)


# The custom ops are the forward computation only, opaque to torch.compile (fake kernels
# give their shapes). Autograd and vmap live in the autograd.Functions below, which
# functorch composes (torch.func.grad, vmap(grad(...)) for per-sample gradients): a custom
# op's own register_autograd does not work under torch.func.grad.


@torch.library.custom_op("dropkit::seeded_mask_affine", mutates_args=())
def _mask_affine_fwd(x: Tensor, p: float, seed: Tensor, offset: int, scale: float, shift: float,
                     fill: float) -> Tensor:
    return _mask_affine_impl(x, p, seed, offset, scale, shift, fill)


@_mask_affine_fwd.register_fake
def _(x: Tensor, p: float, seed: Tensor, offset: int, scale: float, shift: float, fill: float
      ) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("dropkit::seeded_mask_affine_seeds", mutates_args=())
def _mask_affine_seeds_fwd(xs: Tensor, p: float, seeds: Tensor, offset: int, scale: float,
                           shift: float, fill: float) -> Tensor:
    return _mask_affine_seeds_impl(xs, p, seeds, offset, scale, shift, fill)


@_mask_affine_seeds_fwd.register_fake
def _(xs: Tensor, p: float, seeds: Tensor, offset: int, scale: float, shift: float,
      fill: float) -> Tensor:
    return torch.empty(xs.shape, dtype=xs.dtype, device=xs.device)


@torch.library.custom_op("dropkit::seeded_bias_dropout_add", mutates_args=())
def _bias_dropout_add_fwd(x: Tensor, bias: Tensor, residual: Tensor, p: float, seed: Tensor,
                          offset: int) -> Tensor:
    return _bias_dropout_add_impl(x, bias, residual, p, int(seed), offset)


@_bias_dropout_add_fwd.register_fake
def _(x: Tensor, bias: Tensor, residual: Tensor, p: float, seed: Tensor, offset: int
      ) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _to_front(t: Tensor, bdim: int | None, size: int) -> Tensor:
    return t.movedim(bdim, 0) if bdim is not None else t.expand(size, *t.shape)


class MaskAffine(torch.autograd.Function):
    """``x * scale + shift`` where kept, ``x * 0 + fill`` where dropped, the keep mask
    recomputed from (seed, offset); ``seed`` a 0-dim int64 tensor. Dropout is
    (1 / (1 - p), 0, 0)."""

    @staticmethod
    def forward(x: Tensor, p: float, seed: Tensor, offset: int, scale: float, shift: float,
                fill: float) -> Tensor:
        return _mask_affine_fwd(x, p, seed, offset, scale, shift, fill)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        # Only the scalars and the 0-dim seed: the mask is regenerated, nothing per element
        # is kept.
        ctx.p, ctx.seed, ctx.offset, ctx.scale = inputs[1:5]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        # d out / d x is `scale` where kept and 0 where dropped: the same op with no shift
        return mask_affine_op(grad, ctx.p, ctx.seed, ctx.offset, ctx.scale, 0.0, 0.0), \
            *[None] * 6

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x: Tensor, p: float, seed: Tensor,
             offset: int, *affine: float) -> tuple[Tensor, int]:
        x_dim, seed_dim = in_dims[0], in_dims[2]
        size = info.batch_size
        xs = _to_front(x, x_dim, size)

        def op(t: Tensor, s: Tensor) -> Tensor:
            return mask_affine_op(t, p, s, offset, *affine)

        if seed_dim is not None:  # a seed per sample: one launch for all of them
            return mask_affine_seeds_op(xs, p, seed.movedim(seed_dim, 0), offset, *affine), 0
        if info.randomness == "different":
            # one call over the batch: sample b reads indices offset + b * numel + i
            return op(xs.contiguous(), seed), 0
        # "same"/"error": the op is a function of (seed, offset): every sample gets one mask
        return torch.stack([op(xs[b], seed) for b in range(size)]), 0


class MaskAffineSeeds(torch.autograd.Function):
    """:class:`MaskAffine` over samples ``xs`` (S, ...) with seeds ``seeds`` (S,): what vmap
    over per-sample seeds computes, in one kernel launch on CUDA."""

    @staticmethod
    def forward(xs: Tensor, p: float, seeds: Tensor, offset: int, scale: float, shift: float,
                fill: float) -> Tensor:
        return _mask_affine_seeds_fwd(xs, p, seeds, offset, scale, shift, fill)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.p, ctx.seeds, ctx.offset, ctx.scale = inputs[1:5]  # S seeds, no mask

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return mask_affine_seeds_op(grad, ctx.p, ctx.seeds, ctx.offset, ctx.scale, 0.0,
                                    0.0), *[None] * 6

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], xs: Tensor, p: float, seeds: Tensor,
             offset: int, *affine: float) -> tuple[Tensor, int]:
        # an outer vmap (rare: vmap of vmap over seeds): one call per outer sample
        size = info.batch_size
        xo, so = _to_front(xs, in_dims[0], size), _to_front(seeds, in_dims[2], size)
        return torch.stack([mask_affine_seeds_op(xo[b], p, so[b], offset, *affine)
                            for b in range(size)]), 0


class BiasDropoutAdd(torch.autograd.Function):
    """``residual + dropout(x + bias)`` in one pass (the transformer residual path)."""

    @staticmethod
    def forward(x: Tensor, bias: Tensor, residual: Tensor, p: float, seed: Tensor, offset: int
                ) -> Tensor:
        return _bias_dropout_add_fwd(x, bias, residual, p, seed, offset)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.p, ctx.seed, ctx.offset = inputs[3:6]  # scalars only, as in MaskAffine

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        grad_x = dropout_op(grad, ctx.p, ctx.seed, ctx.offset)
        grad_bias = grad_x.reshape(-1, grad_x.shape[-1]).sum(0) if grad_x.dim() else grad_x
        return grad_x, grad_bias, grad, None, None, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x: Tensor, bias: Tensor, residual: Tensor,
             p: float, seed: Tensor, offset: int) -> tuple[Tensor, int]:
        size = info.batch_size
        xs, rs = _to_front(x, in_dims[0], size), _to_front(residual, in_dims[2], size)
        if in_dims[1] is not None or in_dims[4] is not None or info.randomness != "different":
            bs = _to_front(bias, in_dims[1], size)
            seeds = _to_front(seed, in_dims[4], size)
            return torch.stack([bias_dropout_add_op(xs[b], bs[b], rs[b], p, seeds[b], offset)
                                for b in range(size)]), 0
        return bias_dropout_add_op(xs.contiguous(), bias, rs.contiguous(), p, seed, offset), 0


def _eager(*tensors: Tensor) -> bool:
    """Plain eager tensors, no functorch transform, no compiler: the ops may skip the
    custom-op and transform-ready autograd.Function layers, whose host cost per call
    (about 0.1 ms on an H100 machine, bench_mc_predict --profile) is many kernels' time
    at the sizes of an MC sample."""
    return (all(type(t) is Tensor or type(t) is torch.nn.Parameter for t in tensors)
            and functorch_interpreter_idle()
            and not torch.compiler.is_compiling())


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class _MaskAffineEager(torch.autograd.Function):
    """:class:`MaskAffine` for plain eager autograd: the old-style ``forward(ctx, ...)``
    skips the signature binding that ``setup_context`` functions pay on every call."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float, seed: Tensor, offset: int, scale: float,
                shift: float, fill: float) -> Tensor:
        ctx.p, ctx.seed, ctx.offset, ctx.scale = p, seed, offset, scale
        return _mask_affine_impl(x, p, seed, offset, scale, shift, fill)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return mask_affine_op(grad, ctx.p, ctx.seed, ctx.offset, ctx.scale, 0.0, 0.0), \
            *[None] * 6


class _BiasDropoutAddEager(torch.autograd.Function):
    """:class:`BiasDropoutAdd` for plain eager autograd (see :class:`_MaskAffineEager`)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, bias: Tensor, residual: Tensor, p: float, seed: Tensor,
                offset: int) -> Tensor:
        ctx.p, ctx.seed, ctx.offset = p, seed, offset
        return _bias_dropout_add_impl(x, bias, residual, p, int(seed), offset)

    backward = staticmethod(BiasDropoutAdd.backward)


def mask_affine_op(x: Tensor, p: float, seed: Tensor, offset: int, scale: float, shift: float,
                   fill: float) -> Tensor:
    """See :class:`MaskAffine`."""
    if _eager(x):
        if _needs_grad(x):
            return _MaskAffineEager.apply(x, p, seed, offset, scale, shift, fill)
        return _mask_affine_impl(x, p, seed, offset, scale, shift, fill)
    return MaskAffine.apply(x, p, seed, offset, scale, shift, fill)


def mask_affine_seeds_op(xs: Tensor, p: float, seeds: Tensor, offset: int, scale: float,
                         shift: float, fill: float) -> Tensor:
    """See :class:`MaskAffineSeeds`."""
    return MaskAffineSeeds.apply(xs, p, seeds, offset, scale, shift, fill)


def dropout_op(x: Tensor, p: float, seed: Tensor, offset: int) -> Tensor:
    """x * keep / (1 - p), keep recomputed from (seed, offset)."""
    return mask_affine_op(x, p, seed, offset, _scale(p), 0.0, 0.0)


def bias_dropout_add_op(x: Tensor, bias: Tensor, residual: Tensor, p: float, seed: Tensor,
                        offset: int) -> Tensor:
    """See :class:`BiasDropoutAdd`."""
    if _eager(x, bias, residual):
        if _needs_grad(x, bias, residual):
            return _BiasDropoutAddEager.apply(x, bias, residual, p, seed, offset)
        return _bias_dropout_add_impl(x, bias, residual, p, int(seed), offset)
    return BiasDropoutAdd.apply(x, bias, residual, p, seed, offset)
