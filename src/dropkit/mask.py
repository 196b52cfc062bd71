"""The one mask primitive behind every dropout variant.

A variant is three choices: a *noise shape* (the input's shape with size 1 along the
dims the noise is shared over), a *distribution* (Bernoulli keep masks, Gaussian
noise) and a *scaling* (inverted dropout's 1 / (1 - p), alpha dropout's affine map,
DropBlock's kept fraction). This module owns the first two; each variant in
:mod:`dropkit.functional` applies its own scaling in a few lines.

Inside :func:`shared_draws` every draw comes from one generator and is shared along the
input's batch dim: each pass is then one network for every input, whatever the batch
(consistent Monte Carlo dropout, :mod:`dropkit.inference.consistent`). A variant says which dim
of the tensor it draws for is the batch (``batch_dim``; None where there is none, as for a
weight mask or an unbatched input); nothing else in a variant knows about it.

Noise is always drawn from a tensor derived from the input, never from a fresh
factory tensor, so that it works inside ``torch.func.vmap(..., randomness="different")``:
Monte Carlo dropout vectorizes its samples that way, and an in-place draw on an
unbatched tensor fails there. Every draw takes its generator from
``dropkit._recompute.generator_for``, so that the recompute of
``torch.utils.checkpoint`` draws the forward's masks again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import torch
from torch import Tensor

from dropkit._recompute import generator_for
from dropkit._torch_compat import functorch_transforms_active

__all__ = [
    "shared_draws",
    "shared_generator",
    "stream_draws",
    "Stream",
    "draws_redirected",
    "seeds_on_device",
    "device_seeds",
    "batch_first",
    "noise_shape",
    "uniform_noise",
    "bernoulli_mask",
    "normal_noise",
    "bernoulli_dropout",
]  # the variants' helpers (apply_noise, in_place_ok, zeros_like_input) are not public


class _Shared:
    """The generator of the enclosing :func:`shared_draws`, the stream of the enclosing
    :func:`stream_draws`, and whether a :func:`seeds_on_device` is open (plain
    attributes, not ``ContextVar``: torch.compile traces an attribute read, and guards on
    it)."""

    generator: torch.Generator | None = None
    stream: Stream | None = None
    device_seeds: bool = False


class Stream(Protocol):
    """Where every draw comes from inside :func:`stream_draws` (see
    :mod:`dropkit.seeded.stream`): float32 noise shaped like its argument."""

    def uniform(self, like: Tensor) -> Tensor: ...

    def normal(self, like: Tensor, mean: float, std: float) -> Tensor: ...


_SHARED = _Shared()


@contextmanager
def shared_draws(generator: torch.Generator) -> Iterator[torch.Generator]:
    """Inside, every draw of this module comes from ``generator`` and has size 1 along its
    batch dim: one network for every input of the batch, and, with ``generator`` reseeded
    alike, of every later batch (the noise no longer depends on the batch size).
    Process-wide, as torch's default generator is: another thread's draws meanwhile are
    shared too."""
    outer, _SHARED.generator = _SHARED.generator, generator
    try:
        yield generator
    finally:
        _SHARED.generator = outer


@contextmanager
def stream_draws(stream: Stream) -> Iterator[Stream]:
    """Inside, every draw of this module comes from ``stream``, in the noise shape the
    variant asks for: an exported program's draws, a function of its seed input
    (:func:`dropkit.export_mc`). Process-wide, as :func:`shared_draws` is."""
    outer, _SHARED.stream = _SHARED.stream, stream
    try:
        yield stream
    finally:
        _SHARED.stream = outer


@contextmanager
def seeds_on_device() -> Iterator[None]:
    """Inside, seeded modules on CUDA inputs draw their seeds on the GPU, as they do while
    a CUDA graph is being captured (a seed read on the host would be replayed), also
    where nothing is being captured: the warm-up before a capture must run the capture's
    own kernels (:func:`dropkit.mc_graph`). Process-wide, as :func:`shared_draws` is."""
    outer, _SHARED.device_seeds = _SHARED.device_seeds, True
    try:
        yield
    finally:
        _SHARED.device_seeds = outer


def device_seeds() -> bool:
    """Whether a :func:`seeds_on_device` is open."""
    return _SHARED.device_seeds


def draws_redirected() -> bool:
    """Whether :func:`shared_draws` or :func:`stream_draws` decides every draw now: a
    module's own seeded path or torch's fused kernel must then not draw."""
    return _SHARED.generator is not None or _SHARED.stream is not None


def shared_generator() -> torch.Generator | None:
    """The generator of the enclosing :func:`shared_draws`, or None outside one: the one
    question the draws outside this module (LayerDrop's coins, the seeded backend) ask."""
    return _SHARED.generator


def batch_first(x: Tensor) -> int | None:
    """Torch's convention for an input of any shape: dim 0 is the batch when there are
    two dims or more, and a 1D input is one unbatched example."""
    return 0 if x.dim() > 1 else None


def _plan(broadcast_dims: Sequence[int], generator: torch.Generator | None,
          batch_dim: int | None) -> tuple[Sequence[int], torch.Generator | None]:
    """The dims and generator of a draw: as asked, or, inside :func:`shared_draws`, the
    shared generator with the batch dim broadcast too."""
    shared = _SHARED.generator
    if shared is None:
        return broadcast_dims, generator
    if batch_dim is not None and batch_dim not in broadcast_dims:
        broadcast_dims = (*broadcast_dims, batch_dim)
    return broadcast_dims, shared


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
    return functorch_transforms_active()


def uniform_noise(
    x: Tensor,
    broadcast_dims: Sequence[int] = (),
    *,
    generator: torch.Generator | None = None,
    batch_dim: int | None = 0,
) -> Tensor:
    """Uniform [0, 1) noise in the noise shape, in float32 or wider.

    Never in half precision: bf16 has 8 bits, too few to draw a rate from (a Bernoulli
    mask compares this with ``keep``; the Concrete relaxation transforms it).
    ``batch_dim``: the dim of ``x`` that :func:`shared_draws` shares (None: none).
    """
    broadcast_dims, generator = _plan(broadcast_dims, generator, batch_dim)
    wide = torch.promote_types(x.dtype, torch.float32)
    noise = _empty_noise(x, broadcast_dims, wide)
    if _SHARED.stream is not None:
        return _SHARED.stream.uniform(noise).to(wide)
    generator = generator_for(generator, x.device, "dropkit mask")
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
    batch_dim: int | None = 0,
) -> Tensor:
    """A 0/1 mask in ``x``'s dtype, 1 with probability ``keep``, shared along ``broadcast_dims``.

    Args:
        x: the tensor the mask will be applied to.
        keep: probability of a 1 (= 1 - p).
        broadcast_dims: dims along which the mask has size 1 (already normalized).
        generator: source of randomness; ``None`` uses the global generator.
        batch_dim: the dim of ``x`` that :func:`shared_draws` shares; None where ``x``
            has no batch dim (a weight, an unbatched input). Default: 0.

    Shape:
        ``noise_shape(x.shape, broadcast_dims)`` (with size 1 at ``batch_dim`` as well
        inside :func:`shared_draws`).
    """
    # A uniform draw compared with `keep` is about 3.4x faster on CPU than torch's
    # bernoulli_ (benchmarks/bench_mlp_step.py).
    uniform = uniform_noise(x, broadcast_dims, generator=generator, batch_dim=batch_dim)
    mask = uniform < keep if _under_vmap() else uniform.lt_(keep)  # vmap has no lt_ rule
    return mask.to(x.dtype)


def normal_noise(
    x: Tensor,
    mean: float,
    std: float,
    broadcast_dims: Sequence[int] = (),
    *,
    generator: torch.Generator | None = None,
    batch_dim: int | None = 0,
) -> Tensor:
    """Gaussian noise N(mean, std^2) in ``x``'s dtype, shared along ``broadcast_dims``
    (and ``batch_dim`` inside :func:`shared_draws`)."""
    broadcast_dims, generator = _plan(broadcast_dims, generator, batch_dim)
    noise = _empty_noise(x, broadcast_dims)
    if _SHARED.stream is not None:
        return _SHARED.stream.normal(noise, mean, std).to(noise.dtype)
    generator = generator_for(generator, x.device, "dropkit noise")
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
    batch_dim: int | None = 0,
) -> Tensor:
    """Bernoulli dropout on checked arguments: the body every Bernoulli variant shares.

    Returns ``x`` itself in eval or at p = 0, exact zeros at p = 1 (never 0 / 0), and
    otherwise ``x * mask / (1 - p)`` with one draw shared along ``broadcast_dims``
    (``scale=False``: no division, DropPath's ``scale_by_keep=False``); ``batch_dim`` as
    in :func:`bernoulli_mask`.
    """
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return zeros_like_input(x, inplace)
    if (generator is None and not broadcast_dims and scale and x.device.type in FUSED_DEVICES
            and not draws_redirected()  # torch's kernel draws per element, from its own
            and generator_for(None, x.device, "dropkit mask") is None):  # no region
        return torch.nn.functional.dropout(x, p, True, in_place_ok(inplace))
    keep = 1.0 - p
    noise = bernoulli_mask(x, keep, broadcast_dims, generator=generator,
                           batch_dim=batch_dim)  # noise shape
    if scale:
        noise = noise.div_(keep)  # inverted dropout: E[output] = input
    return apply_noise(x, noise, inplace)
