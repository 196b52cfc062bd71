"""Draws as a pure function of a seed *tensor*: the noise of an exported program.

A program exported with a seed input (:func:`dropkit.export_mc`) cannot call
:func:`dropkit.seeded.new_seed` or read a generator: every draw must follow from the
``seed`` and ``offset`` tensors it is given. :class:`CounterStream` hands each draw of
a pass the next Philox counters of that stream, through one op,
``dropkit::philox_uniform(like, seed, counter)``: the float32 uniforms of elements
``0 .. like.numel() - 1`` at element offset ``4 * counter``, which are
:func:`dropkit.seeded.uniform`'s bits (tested), so a served sample is reproducible in
eager torch. The op is opaque to ``torch.export`` (one node, its shape from ``like``,
so a dynamic batch size stays dynamic) and has an ONNX form in
:mod:`dropkit.seeded.onnx`, built from unsigned 64-bit ONNX ops.

:class:`RuntimeStream` is the other choice: the runtime's own generator (``rand_like``,
ONNX's ``RandomUniformLike``), faster, but not a function of any input.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dropkit.seeded.philox import uniform

__all__ = ["philox_uniform", "CounterStream", "RuntimeStream", "normal_from_uniform"]


@torch.library.custom_op("dropkit::philox_uniform", mutates_args=())
def philox_uniform(like: Tensor, seed: Tensor, counter: Tensor) -> Tensor:
    """Float32 uniforms in [0, 1) shaped like ``like``: elements at ``4 * counter`` and on
    of the Philox stream keyed by ``seed`` (0-dim int64 tensors both)."""
    out = uniform(like.numel(), seed=int(seed), offset=4 * int(counter), device=like.device)
    return out.view(like.shape)


@philox_uniform.register_fake
def _(like: Tensor, seed: Tensor, counter: Tensor) -> Tensor:
    return torch.empty(like.shape, dtype=torch.float32, device=like.device)


def normal_from_uniform(u1: Tensor, u2: Tensor) -> Tensor:
    """Standard normal draws from two uniform ones (Box and Muller, 1958); ``1 - u1`` is
    in (0, 1], so the logarithm is finite."""
    return torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos((2.0 * math.pi) * u2)


class CounterStream:
    """The draws of one pass keyed by ``seed`` from counter ``offset`` on: each draw takes
    the next ``ceil(numel / 4)`` counters, so draws never share a uniform."""

    def __init__(self, seed: Tensor, offset: Tensor) -> None:
        self.seed = seed
        self.next = offset

    def uniform(self, like: Tensor) -> Tensor:
        """Uniforms in [0, 1), float32, shaped like ``like``."""
        u = philox_uniform(like, self.seed, self.next)
        self.next = self.next + (like.numel() + 3) // 4
        return u

    def normal(self, like: Tensor, mean: float, std: float) -> Tensor:
        """Gaussian noise N(mean, std^2), float32, shaped like ``like``."""
        z = normal_from_uniform(self.uniform(like), self.uniform(like))
        return z * std + mean


class RuntimeStream:
    """Draws from the runtime's own generator, out of place (an exported graph's
    ``rand_like``): no seed input, and two calls never agree."""

    def uniform(self, like: Tensor) -> Tensor:
        return torch.rand_like(like, dtype=torch.float32)

    def normal(self, like: Tensor, mean: float, std: float) -> Tensor:
        return torch.randn_like(like, dtype=torch.float32) * std + mean
