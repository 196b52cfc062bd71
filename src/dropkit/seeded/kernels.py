"""Triton kernels of seeded dropout: one Philox call serves four elements.

A program handles ``BLOCK`` Philox counters, that is ``4 * BLOCK`` consecutive elements
as a ``(BLOCK, 4)`` tile, so loads and stores stay contiguous and the random numbers
cost a quarter of a Philox call per element. Indices are 64-bit: tensors past 2**31
elements work. On a machine without a GPU the kernels run in Triton's interpreter
(``TRITON_INTERPRET=1``, set before this module is imported), which the tests use.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = [
    "mask_affine_kernel", "mask_affine_seeds_kernel", "bias_dropout_add_kernel",
    "tile_crosses_rows", "grid", "LAUNCH",
]

# No fused multiply-add: the CPU path rounds the product and the sum separately, and
# the kernels must give its bits (an FMA rounds once).
LAUNCH = {"enable_fp_fusion": False}


@triton.jit
def _keep_tile(seed, offset, pid, p, BLOCK: tl.constexpr):
    """Element indices (BLOCK, 4) of this program and whether each is kept."""
    first = offset // 4 + pid.to(tl.int64) * BLOCK  # first counter of this program
    counters = first + tl.arange(0, BLOCK).to(tl.int64)
    u0, u1, u2, u3 = tl.rand4x(seed, counters)
    # join appends a minor dim: ((u0, u2), (u1, u3)) flattens to u0, u1, u2, u3
    u = tl.reshape(tl.join(tl.join(u0, u2), tl.join(u1, u3)), (BLOCK, 4))
    idx = counters[:, None] * 4 + tl.arange(0, 4)[None, :].to(tl.int64) - offset
    return idx, u >= p


@triton.jit
def _mask_affine_tile(x_ptr, out_ptr, n, p, scale, shift, fill, seed, offset, pid,
                      BLOCK: tl.constexpr, AFFINE: tl.constexpr):
    idx, keep = _keep_tile(seed, offset, pid, p, BLOCK)
    inside = (idx >= 0) & (idx < n)
    x = tl.load(x_ptr + idx, mask=inside, other=0.0)
    y = x.to(tl.float32) * scale
    # dropped: x * 0, as torch's x * mask: NaN and Inf give NaN, a negative -0.0
    z = x.to(tl.float32) * 0.0
    if AFFINE:  # a constexpr branch: dropout keeps -0.0 * scale = -0.0, as torch does
        y = y + shift
        z = z + fill
    y = tl.where(keep, y, z)
    tl.store(out_ptr + idx, y.to(x.dtype, fp_downcast_rounding="rtne"), mask=inside)


# Seeds are not specialized on: Triton would compile a variant for a seed divisible by
# 16 or equal to 1, and a fresh seed per call would hit one now and then (one compile,
# tens of milliseconds, in the middle of training: seen on an H100 in gpu_check).
@triton.jit(do_not_specialize=["seed"])
def mask_affine_kernel(x_ptr, out_ptr, n, p, scale, shift, fill, seed, offset,
                       BLOCK: tl.constexpr, AFFINE: tl.constexpr):
    """out = x * scale (+ shift if AFFINE) where kept, else x * 0 (+ fill if AFFINE): a
    dropped NaN or Inf gives NaN, as torch's dropout does.

    Dropout is (1 / (1 - p), 0, 0); alpha dropout (a, b, a * alpha' + b); either's
    backward is (scale, 0, 0) with x := grad.
    """
    _mask_affine_tile(x_ptr, out_ptr, n, p, scale, shift, fill, seed, offset,
                      tl.program_id(0), BLOCK, AFFINE)


@triton.jit
def mask_affine_seeds_kernel(x_ptr, out_ptr, seeds_ptr, n, x_stride, p, scale, shift, fill,
                             offset, BLOCK: tl.constexpr, AFFINE: tl.constexpr):
    """:func:`mask_affine_kernel` for S samples in one launch, sample s (grid axis 1) with
    its own seed ``seeds[s]``: out[s] = op(x[s]) where x[s] starts at ``s * x_stride``
    (0: one input shared by every sample) and out[s] at ``s * n``. The bits are those of S
    separate launches; vmap over per-sample seeds (MC dropout's seeded samples) takes it.
    """
    sample = tl.program_id(1).to(tl.int64)
    seed = tl.load(seeds_ptr + sample)
    _mask_affine_tile(x_ptr + sample * x_stride, out_ptr + sample * n, n, p, scale, shift,
                      fill, seed, offset, tl.program_id(0), BLOCK, AFFINE)


@triton.jit(do_not_specialize=["seed"])
def bias_dropout_add_kernel(x_ptr, bias_ptr, res_ptr, out_ptr, n, h, p, scale, seed, offset,
                            BLOCK: tl.constexpr, WRAP: tl.constexpr):
    """out = residual + dropout(x + bias), bias broadcast along the last dim (size h).

    The bias column takes one 64-bit remainder per program; per element it is the tile's
    own 32-bit offset, wrapped by a 32-bit remainder only when a tile can cross a row
    (``WRAP``; see :func:`tile_crosses_rows`). A 64-bit remainder per element would cost
    more than the memory traffic of the op.
    """
    pid = tl.program_id(0)
    idx, keep = _keep_tile(seed, offset, pid, p, BLOCK)
    inside = (idx >= 0) & (idx < n)
    first = pid.to(tl.int64) * BLOCK * 4 - offset % 4  # element index of the tile's slot 0
    local = tl.arange(0, BLOCK)[:, None] * 4 + tl.arange(0, 4)[None, :]  # (BLOCK, 4) int32
    col = (first % h).to(tl.int32) + local  # C remainder: negative only for masked slots
    if WRAP:
        col = col % h
    x = tl.load(x_ptr + idx, mask=inside, other=0.0)
    b = tl.load(bias_ptr + col, mask=inside, other=0.0)
    r = tl.load(res_ptr + idx, mask=inside, other=0.0)
    v = x.to(tl.float32) + b.to(tl.float32)
    y = r.to(tl.float32) + tl.where(keep, v * scale, v * 0.0)  # dropped NaN stays NaN
    tl.store(out_ptr + idx, y.to(x.dtype, fp_downcast_rounding="rtne"), mask=inside)


def tile_crosses_rows(h: int, offset: int, block: int) -> bool:
    """Whether a tile of ``4 * block`` elements can hold the end of a row of ``h``: not when
    rows are whole tiles and tiles start on a row (the offset a multiple of 4)."""
    return h % (4 * block) != 0 or offset % 4 != 0


def grid(n: int, offset: int, block: int) -> tuple[int]:
    """Programs needed to cover elements 0..n-1 when the first sits at ``offset % 4``."""
    counters = (offset % 4 + n + 3) // 4
    return (triton.cdiv(max(counters, 1), block),)
