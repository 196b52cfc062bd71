"""The one mask primitive behind every dropout variant.

A variant is three choices: a *noise shape* (the input's shape with size 1 along the
dims the noise is shared over), a *distribution* (Bernoulli keep masks, Gaussian
noise) and a *scaling* (inverted dropout's 1 / (1 - p), alpha dropout's affine map,
DropBlock's kept fraction). This module owns the first two; each variant in
:mod:`dropkit.functional` applies its own scaling in a few lines.

Noise is always drawn from a tensor derived from the input, never from a fresh
factory tensor, so that it works inside ``torch.func.vmap(..., randomness="different")``:
Monte Carlo dropout vectorizes its samples that way, and an in-place draw on an
unbatched tensor fails there. Every draw takes its generator from
``dropkit._recompute.generator_for``, so that the recompute of
``torch.utils.checkpoint`` draws the forward's masks again.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dropkit._recompute import generator_for

__all__ = [
    "noise_shape",
    "uniform_noise",
    "bernoulli_mask",
    "normal_noise",
    "apply_noise",
    "in_place_ok",
    "zeros_like_input",
    "bernoulli_dropout",
]


def noise_shape(shape: Sequence[int], broadcast_dims: Sequence[int]) -> tuple[int, ...]:
    """The shape of the noise: ``shape`` with size 1 along ``broadcast_dims`` (kept if 0).

    Example: ``noise_shape((N, C, H, W), (2, 3)) == (N, C, 1, 1)``, channel dropout.
    """
    return tuple(min(size, 1) if d in broadcast_dims else size for d, size in enumerate(shape))


def _empty_noise(
    x: Tensor, broadcast_dims: Sequence[int], dtype: torch.dtype | None = None
) -> Tensor:
    """Uninitialised noise of ``x``'s device (and dtype, unless given) in the noise shape.

    Taken by slicing ``x`` so that vmap sees a batched tensor; ``empty_like`` keeps a
    dense input's memory layout (channels_last stays channels_last).
    """
    like = x
    for d in broadcast_dims:
        like = like[(slice(None),) * d + (slice(0, 1),)]  # size 1 (or 0) along d
    return torch.empty_like(like, dtype=dtype)


def _under_vmap() -> bool:
    # Inside a functorch transform an input can be unbatched (the network before the
    # first dropout runs once); an in-place draw on it fails there, so draws go out of
    # place, which vmap batches.
    return torch._C._are_functorch_transforms_active()


def uniform_noise(
    x: Tensor,
    broadcast_dims: Sequence[int] = (),
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Uniform [0, 1) noise in the noise shape, in float32 or wider.

    Never in half precision: bf16 has 8 bits, too few to draw a rate from (a Bernoulli
    mask compares this with ``keep``; the Concrete relaxation transforms it).
    """
    generator = generator_for(generator, x.device, "dropkit mask")
    wide = torch.promote_types(x.dtype, torch.float32)
    noise = _empty_noise(x, broadcast_dims, wide)
    if _under_vmap():
        if generator is None:
            return torch.rand_like(noise)
        # torch has no out-of-place uniform draw that takes a generator; the normal CDF
        # of a standard normal draw is exactly uniform (about 2.3x slower than rand_like).
        return torch.special.ndtr(torch.normal(torch.zeros_like(noise), 1.0, generator=generator))
    return noise.uniform_(generator=generator)


def bernoulli_mask(
    x: Tensor,
    keep: float,
    broadcast_dims: Sequence[int] = (),
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A 0/1 mask in ``x``'s dtype, 1 with probability ``keep``, shared along ``broadcast_dims``.

    Args:
        x: the tensor the mask will be applied to.
        keep: probability of a 1 (= 1 - p).
        broadcast_dims: dims along which the mask has size 1 (already normalized).
        generator: source of randomness; ``None`` uses the global generator.

    Shape:
        ``noise_shape(x.shape, broadcast_dims)``.
    """
    # A uniform draw compared with `keep` is about 3.4x faster on CPU than torch's
    # bernoulli_ (benchmarks/bench_mlp_step.py).
    uniform = uniform_noise(x, broadcast_dims, generator=generator)
    mask = uniform < keep if _under_vmap() else uniform.lt_(keep)  # vmap has no lt_ rule
    return mask.to(x.dtype)


def normal_noise(
    x: Tensor,
    mean: float,
    std: float,
    broadcast_dims: Sequence[int] = (),
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Gaussian noise N(mean, std^2) in ``x``'s dtype, shared along ``broadcast_dims``."""
    generator = generator_for(generator, x.device, "dropkit noise")
    noise = _empty_noise(x, broadcast_dims)
    if _under_vmap():
        return torch.normal(torch.full_like(noise, mean), std, generator=generator)
    return noise.normal_(mean, std, generator=generator)


def in_place_ok(inplace: bool) -> bool:
    """Whether to honour ``inplace``: not under vmap, where an unbatched input cannot hold
    per-sample results (Monte Carlo samples), so the op goes out of place."""
    return inplace and not _under_vmap()


def apply_noise(x: Tensor, noise: Tensor, inplace: bool = False) -> Tensor:
    """``x * noise`` with broadcasting; in place when asked (``x`` must then hold the result)."""
    return x.mul_(noise) if in_place_ok(inplace) else x * noise


def zeros_like_input(x: Tensor, inplace: bool = False) -> Tensor:
    """The p = 1 output: exact zeros, still attached to the graph so gradients are zeros.

    ``x * 0`` would turn an infinite input into NaN; ``masked_fill`` never does.
    """
    drop_all = torch.ones((), dtype=torch.bool, device=x.device)
    return x.masked_fill_(drop_all, 0) if in_place_ok(inplace) else x.masked_fill(drop_all, 0)


#: Devices where element-wise dropout drawn from the default generator takes torch's fused
#: kernel (one pass, a 1-byte mask kept) instead of the uniform-compare-scale primitive
#: (five kernels): on an H100, 3.9x to 7x faster per call past 2**26 elements
#: (benchmarks/gpu_check.py, BENCHMARKS.md). Not the CPU, where the primitive is faster
#: than torch's bernoulli_. Inside a torch.utils.checkpoint region the primitive stays,
#: so that the recompute replays the forward's draws (dropkit._recompute).
FUSED_DEVICES = frozenset({"cuda"})


def bernoulli_dropout(
    x: Tensor,
    p: float,
    training: bool,
    inplace: bool,
    broadcast_dims: Sequence[int],
    generator: torch.Generator | None,
    *,
    scale: bool = True,
) -> Tensor:
    """Bernoulli dropout on checked arguments: the body every Bernoulli variant shares.

    Returns ``x`` itself in eval or at p = 0, exact zeros at p = 1 (never 0 / 0), and
    otherwise ``x * mask / (1 - p)`` with one draw shared along ``broadcast_dims``
    (``scale=False``: no division, DropPath's ``scale_by_keep=False``).
    """
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return zeros_like_input(x, inplace)
    if (generator is None and not broadcast_dims and scale and x.device.type in FUSED_DEVICES
            and generator_for(None, x.device, "dropkit mask") is None):  # no region
        return torch.nn.functional.dropout(x, p, True, in_place_ok(inplace))
    keep = 1.0 - p
    noise = bernoulli_mask(x, keep, broadcast_dims, generator=generator)  # noise shape
    if scale:
        noise = noise.div_(keep)  # inverted dropout: E[output] = input
    return apply_noise(x, noise, inplace)
