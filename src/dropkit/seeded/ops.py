"""Seeded dropout ops: masks recomputed from (seed, offset), never stored.

Registered with ``torch.library`` as custom ops with fake kernels, autograd and vmap
rules, so they run under ``torch.compile(fullgraph=True)`` and ``torch.func.vmap``.
CUDA tensors (fp32, fp16, bf16) go to the Triton kernels; everything else to the
vectorized torch Philox, which produces the same bits.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch
from torch import Tensor

from dropkit.seeded.philox import uniform

__all__ = ["mask_affine_op", "dropout_op", "bias_dropout_add_op", "keep_mask", "HAS_TRITON"]

HAS_TRITON = importlib.util.find_spec("triton") is not None
_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BLOCK = 1024  # counters per program: 4096 elements


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


def _mask_affine_impl(x: Tensor, p: float, seed: int, offset: int, scale: float,
                      shift: float, fill: float) -> Tensor:
    xc = x.contiguous()
    affine = shift != 0.0
    if _use_kernel(xc):
        from dropkit.seeded import kernels

        out = torch.empty_like(xc)
        n = xc.numel()
        if n:
            kernels.mask_affine_kernel[kernels.grid(n, offset, BLOCK)](
                xc, out, n, p, scale, shift, fill, seed, offset, BLOCK=BLOCK, AFFINE=affine,
                **kernels.LAUNCH)
        return out.view(x.shape)
    keep = keep_mask(xc.numel(), p, seed, offset, xc.device).view(x.shape)
    y = xc.to(_compute_dtype(xc)) * scale  # rounded like the kernel: product, then sum
    if affine:
        y = y + shift
    return torch.where(keep, y, torch.full((), fill, dtype=y.dtype)).to(x.dtype)


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
    dropped = torch.where(keep, (xc.to(dt) + bc.to(dt)) * _scale(p), torch.zeros((), dtype=dt))
    return (rc.to(dt) + dropped).to(x.dtype)


@torch.library.custom_op("dropkit::seeded_mask_affine", mutates_args=())
def mask_affine_op(x: Tensor, p: float, seed: Tensor, offset: int, scale: float, shift: float,
                   fill: float) -> Tensor:
    """``x * scale + shift`` where kept, ``fill`` where dropped; the keep mask recomputed
    from (seed, offset), ``seed`` a 0-dim int64 tensor. Dropout is (1 / (1 - p), 0, 0)."""
    return _mask_affine_impl(x, p, int(seed), offset, scale, shift, fill)


@mask_affine_op.register_fake
def _(x: Tensor, p: float, seed: Tensor, offset: int, scale: float, shift: float, fill: float
      ) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    # Only the scalars: the mask is regenerated, nothing per element is kept.
    ctx.p, ctx.seed, ctx.offset = inputs[-3], inputs[-2], inputs[-1]


def _setup_mask_affine(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.p, ctx.seed, ctx.offset, ctx.scale = inputs[1:5]  # scalars only, as in _setup


def _mask_affine_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    # d out / d x is `scale` where kept and 0 where dropped: the same op with no shift
    return mask_affine_op(grad, ctx.p, ctx.seed, ctx.offset, ctx.scale, 0.0, 0.0), *[None] * 6


mask_affine_op.register_autograd(_mask_affine_backward, setup_context=_setup_mask_affine)


def dropout_op(x: Tensor, p: float, seed: Tensor, offset: int) -> Tensor:
    """x * keep / (1 - p), keep recomputed from (seed, offset)."""
    return mask_affine_op(x, p, seed, offset, _scale(p), 0.0, 0.0)


@torch.library.custom_op("dropkit::seeded_bias_dropout_add", mutates_args=())
def bias_dropout_add_op(x: Tensor, bias: Tensor, residual: Tensor, p: float, seed: Tensor,
                        offset: int) -> Tensor:
    """residual + dropout(x + bias) in one pass (the transformer residual path)."""
    return _bias_dropout_add_impl(x, bias, residual, p, int(seed), offset)


@bias_dropout_add_op.register_fake
def _(x: Tensor, bias: Tensor, residual: Tensor, p: float, seed: Tensor, offset: int
      ) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _bda_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    grad_x = dropout_op(grad, ctx.p, ctx.seed, ctx.offset)
    grad_bias = grad_x.reshape(-1, grad_x.shape[-1]).sum(0) if grad_x.dim() else grad_x
    return grad_x, grad_bias, grad, None, None, None


bias_dropout_add_op.register_autograd(_bda_backward, setup_context=_setup)


def _to_front(t: Tensor, bdim: int | None, size: int) -> Tensor:
    return t.movedim(bdim, 0) if bdim is not None else t.expand(size, *t.shape)


@torch.library.register_vmap("dropkit::seeded_mask_affine")
def _mask_affine_vmap(info: Any, in_dims: tuple[Any, ...], x: Tensor, p: float, seed: Tensor,
                      offset: int, *affine: float) -> tuple[Tensor, int]:
    x_dim, seed_dim = in_dims[0], in_dims[2]
    size = info.batch_size
    xs = _to_front(x, x_dim, size)

    def op(t: Tensor, s: Tensor) -> Tensor:
        return mask_affine_op(t, p, s, offset, *affine)

    if seed_dim is not None:  # a seed per sample
        seeds = seed.movedim(seed_dim, 0)
        return torch.stack([op(xs[b], seeds[b]) for b in range(size)]), 0
    if info.randomness == "different":
        # one call over the batch: sample b reads indices offset + b * numel + i
        return op(xs.contiguous(), seed), 0
    # "same"/"error": the op is a function of (seed, offset): every sample gets one mask
    return torch.stack([op(xs[b], seed) for b in range(size)]), 0


@torch.library.register_vmap("dropkit::seeded_bias_dropout_add")
def _bda_vmap(info: Any, in_dims: tuple[Any, ...], x: Tensor, bias: Tensor, residual: Tensor,
              p: float, seed: Tensor, offset: int) -> tuple[Tensor, int]:
    size = info.batch_size
    xs, rs = _to_front(x, in_dims[0], size), _to_front(residual, in_dims[2], size)
    if in_dims[1] is not None or in_dims[4] is not None or info.randomness != "different":
        bs = _to_front(bias, in_dims[1], size)
        seeds = _to_front(seed, in_dims[4], size)
        return torch.stack([bias_dropout_add_op(xs[b], bs[b], rs[b], p, seeds[b], offset)
                            for b in range(size)]), 0
    return bias_dropout_add_op(xs.contiguous(), bias, rs.contiguous(), p, seed, offset), 0
