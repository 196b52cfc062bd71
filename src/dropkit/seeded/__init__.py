"""Seeded, mask-free dropout: masks as a pure function of (seed, offset).

Element ``i`` of a call uses global index ``j = offset + i`` and its uniform is lane
``j % 4`` of Philox4x32-10 at counter ``j // 4``: exactly Triton's
``tl.rand4x(seed, j // 4)``, bit for bit, on CPU (vectorized torch) and on CUDA (Triton
kernels). The backward pass regenerates the mask, so nothing per element is saved
(torch's dropout keeps a byte per element), and the same seed gives the same mask
across runs, devices, and eager vs compiled code.

Learned from: Triton's low-memory dropout tutorial, Megatron-LM's fused
bias-dropout-add, torch's Philox-based CUDA dropout.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dropkit._checks import check_floating, check_int, check_probability
from dropkit._dist import rank
from dropkit._recompute import generator_for
from dropkit.errors import UsageError
from dropkit.functional.alpha_dropout import SELU_ALPHA_PRIME, alpha_affine
from dropkit.mask import zeros_like_input
from dropkit.seeded import philox, stream  # noqa: F401 - stream registers its op
from dropkit.seeded.ops import HAS_TRITON, bias_dropout_add_op, dropout_op, mask_affine_op

__all__ = [
    "uniform", "dropout", "alpha_dropout", "bias_dropout_add", "HAS_TRITON", "new_seed",
    "rank_seed",
]

SEED_LIMIT = 2**64  # a 64-bit Philox key


def _seed(fn: str, seed: int | Tensor) -> Tensor:
    if isinstance(seed, Tensor):
        if seed.dtype != torch.int64 or seed.dim() != 0:
            raise UsageError(f"{fn}: expected `seed` to be an int or a 0-dim int64 tensor, "
                             f"got a {seed.dtype} tensor of shape {tuple(seed.shape)}")
        return seed
    seed = check_int(fn, seed, "seed", 0, SEED_LIMIT)
    return torch.tensor(philox.as_int64(seed), dtype=torch.int64)


def _offset(fn: str, offset: int) -> int:
    return check_int(fn, offset, "offset")


def uniform(n: int, *, seed: int, offset: int = 0) -> Tensor:
    """The stream itself: float32 uniforms in [0, 1) of elements 0..n-1 at ``offset``."""
    n = check_int("uniform", n, "n")
    seed_int, offset = int(_seed("uniform", seed)), _offset("uniform", offset)  # int64 bits
    return philox.uniform(int(n), seed=seed_int, offset=offset)


def new_seed(generator: torch.Generator | None = None) -> Tensor:
    """A fresh 0-dim int64 seed from ``generator`` (or torch's global one), on the CPU.

    A CUDA generator draws on its device and the seed is copied to the host, which waits
    for the GPU: a CPU generator (or the global one) avoids that wait.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    # inside torch.utils.checkpoint, the recompute draws the forward's seed
    generator = generator_for(generator, device, "seeded.new_seed")
    seed = torch.randint(0, 2**62, (), dtype=torch.int64, generator=generator, device=device)
    return seed.cpu()  # the ops read the seed on the host


def rank_seed(seed: Tensor) -> Tensor:
    """``seed`` moved to a stream of this process's own under ``torch.distributed``.

    Data-parallel ranks see different data and must not share masks (a known pitfall:
    ranks seeded alike drop the same units). Without a process group: ``seed`` itself.
    """
    here = rank()
    if here == 0:  # without a process group too: the seed itself
        return seed
    # an odd multiplier (2**64 / golden ratio) spreads ranks over the seed space
    shift = (here * 0x9E3779B97F4A7C15) % 2**62
    return (seed + shift) % 2**62


def dropout(input: Tensor, p: float, training: bool = True, *, seed: int | Tensor, offset: int = 0
            ) -> Tensor:
    """Inverted dropout whose mask is a function of (seed, offset), recomputed in backward.

    Args:
        input: a floating-point tensor (any layout; element i is i in row-major order).
        p: probability of dropping an element.
        training: apply dropout when True.
        seed: an int in [0, 2**64), or a 0-dim int64 tensor (its bits are the key;
            traceable by torch.compile).
        offset: index of the first element in the stream. Default: 0.

    Same (seed, offset), same mask: on CPU and CUDA, eager and compiled.
    """
    p = check_probability("seeded.dropout", p)
    check_floating("seeded.dropout", input, draws=training and p > 0.0)
    seed_t, offset = _seed("seeded.dropout", seed), _offset("seeded.dropout", offset)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return zeros_like_input(input)
    return dropout_op(input, p, seed_t, offset)


def alpha_dropout(input: Tensor, p: float, training: bool = True, *, seed: int | Tensor,
                  offset: int = 0) -> Tensor:
    """Alpha dropout (:func:`dropkit.functional.alpha_dropout`) with a seeded mask.

    Kept elements become ``a * x + b`` and dropped ones ``a * alpha' + b``; the backward
    pass regenerates the mask. Args as in :func:`dropout`; ``p = 1`` returns zeros.
    """
    p = check_probability("seeded.alpha_dropout", p)
    check_floating("seeded.alpha_dropout", input, draws=training and p > 0.0)
    seed_t = _seed("seeded.alpha_dropout", seed)
    offset = _offset("seeded.alpha_dropout", offset)
    if not training or p == 0.0:
        return input
    if p == 1.0:  # no affine map exists (a = 1 / sqrt(0)); zeros, as the torch backend
        return zeros_like_input(input)
    a, b = alpha_affine(p)
    return mask_affine_op(input, p, seed_t, offset, a, b, a * SELU_ALPHA_PRIME + b)


def bias_dropout_add(x: Tensor, bias: Tensor, residual: Tensor, p: float, training: bool = True,
                     *, seed: int | Tensor, offset: int = 0) -> Tensor:
    """``residual + dropout(x + bias)`` in one pass, the residual path of Megatron-LM.

    Args:
        x: ``(..., H)``; bias: ``(H,)``; residual: ``x``'s shape.
        p, training, seed, offset: as in :func:`dropout`.
    """
    p = check_probability("seeded.bias_dropout_add", p)
    for name, t in (("x", x), ("bias", bias), ("residual", residual)):
        check_floating("seeded.bias_dropout_add", t, name)
    if x.dim() == 0 or bias.shape != x.shape[-1:] or residual.shape != x.shape:
        raise UsageError(
            f"seeded.bias_dropout_add: expected x (..., H), bias (H,) and residual like x, got "
            f"{tuple(x.shape)}, {tuple(bias.shape)} and {tuple(residual.shape)}")
    seed_t = _seed("seeded.bias_dropout_add", seed)
    offset = _offset("seeded.bias_dropout_add", offset)
    if not training or p == 0.0:
        return residual + (x + bias)
    return bias_dropout_add_op(x, bias, residual, p, seed_t, offset)
