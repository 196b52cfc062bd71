"""Philox4x32-10 in vectorized torch: the same bits as Triton's ``tl.rand4x``.

Element ``i`` of a call with ``seed`` and ``offset`` has global index ``j = offset + i``
and takes lane ``j % 4`` of Philox4x32-10 at counter ``j // 4``, keyed by the seed's
two 32-bit halves; a counter past 2**32 carries into the second counter word, as
``tl.randint4x`` does with 64-bit offsets. Paper: Salmon et al. 2011, "Parallel random
numbers: as easy as 1, 2, 3". Learned from Triton's ``language/random.py``.

uint32 arithmetic is done in int64 tensors; 32x32-bit products are split into 16-bit
halves so no intermediate leaves int64's range.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["philox4x32", "uniform_from_uint32", "uniform", "as_int64"]

ROUND_A, ROUND_B = 0xD2511F53, 0xCD9E8D57  # multipliers
KEY_A, KEY_B = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
MASK32 = 0xFFFFFFFF
ROUNDS = 10


def as_int64(seed: int) -> int:
    """A 64-bit key in [0, 2**64) as the int64 with the same bits (two's complement)."""
    return seed - 2**64 if seed >= 2**63 else seed


def _mul_hi_lo(a: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """High and low 32 bits of ``a * x`` for a 32-bit constant and uint32 values in int64."""
    lo16, hi16 = x & 0xFFFF, x >> 16
    p_lo, p_hi = a * lo16, a * hi16  # each < 2**48
    t = ((p_hi & 0xFFFF) << 16) + p_lo  # < 2**49
    return (p_hi >> 16) + (t >> 32), t & MASK32


def philox4x32(counter: Tensor, seed: int | Tensor, rounds: int = ROUNDS) -> tuple[Tensor, ...]:
    """Four uint32 words (int64 tensors) of Philox at 64-bit ``counter`` (c2 = c3 = 0)."""
    if not isinstance(seed, Tensor):
        seed = as_int64(seed)
    seed_t = torch.as_tensor(seed, dtype=torch.int64, device=counter.device)
    # an arithmetic shift of a negative int64 still leaves the key's high word after masking
    k0, k1 = seed_t & MASK32, (seed_t >> 32) & MASK32
    c0, c1 = counter & MASK32, (counter >> 32) & MASK32
    c2 = torch.zeros_like(c0)
    c3 = torch.zeros_like(c0)
    for _ in range(rounds):
        hi_b, lo_b = _mul_hi_lo(ROUND_B, c2)
        hi_a, lo_a = _mul_hi_lo(ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0, k1 = (k0 + KEY_A) & MASK32, (k1 + KEY_B) & MASK32
    return c0, c1, c2, c3


def uniform_from_uint32(x: Tensor) -> Tensor:
    """Triton's ``uint_to_uniform_float``: int32 bit pattern, folded to >= 0, times the
    largest scale that keeps the result below 1 in float32."""
    signed = torch.where(x >= 2**31, x - 2**32, x)  # bitcast to int32
    folded = torch.where(signed < 0, -signed - 1, signed).to(torch.float32)
    return folded * torch.tensor(4.6566127342e-10, dtype=torch.float32)


def uniform(n: int, *, seed: int | Tensor, offset: int = 0, device: torch.device | str = "cpu"
            ) -> Tensor:
    """The float32 uniforms of elements ``0 .. n-1`` for ``seed`` at ``offset``."""
    if n == 0:
        return torch.empty(0, dtype=torch.float32, device=device)
    first, last = offset // 4, (offset + n - 1) // 4
    counters = torch.arange(first, last + 1, dtype=torch.int64, device=device)
    words = philox4x32(counters, seed)
    u = torch.stack([uniform_from_uint32(w) for w in words], dim=1).reshape(-1)  # lane order
    start = offset - 4 * first
    return u[start : start + n]
