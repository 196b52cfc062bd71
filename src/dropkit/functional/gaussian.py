"""Gaussian dropout and additive Gaussian noise.

Papers: Srivastava et al. 2014, section 10 (multiplicative Gaussian noise N(1, p/(1-p))
matches Bernoulli dropout's mean and variance); Wang & Manning 2013, "Fast dropout
training". Learned from: Keras 3 ``GaussianDropout`` / ``GaussianNoise``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dropkit._checks import check_call, check_floating, check_generator, check_nonnegative
from dropkit._fx import leaf_function
from dropkit.mask import batch_first, normal_noise

__all__ = ["gaussian_dropout", "gaussian_noise"]


@leaf_function  # one node under torch.fx
def gaussian_dropout(
    input: Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Multiply each element by noise drawn from :math:`\mathcal{N}(1, p / (1 - p))`.

    The noise has Bernoulli dropout's mean (1) and variance (p / (1 - p)) after inverted
    scaling, without zeroing anything. ``p`` must be below 1: the variance is infinite there.

    Args:
        input: a floating-point tensor.
        p: the equivalent drop probability, in [0, 1). Default: 0.5.
        training, generator: as in :func:`dropkit.functional.dropout`.

    Module: :class:`dropkit.nn.GaussianDropout`.
    """
    p = check_call("gaussian_dropout", input, p, training, generator, allow_one=False)
    if not training or p == 0.0:
        return input
    noise = normal_noise(input, 1.0, math.sqrt(p / (1.0 - p)), generator=generator,
                         batch_dim=batch_first(input))
    return input * noise


@leaf_function  # one node under torch.fx
def gaussian_noise(
    input: Tensor,
    std: float,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Add noise drawn from :math:`\mathcal{N}(0, \text{std}^2)`: a regularizer, not a drop.

    Args:
        input: a floating-point tensor.
        std: standard deviation of the noise, finite and >= 0.
        training, generator: as in :func:`dropkit.functional.dropout`.

    Module: :class:`dropkit.nn.GaussianNoise`.
    """
    std = check_nonnegative("gaussian_noise", std, "std")
    check_floating("gaussian_noise", input, draws=training and std > 0.0)
    check_generator("gaussian_noise", generator, input)
    if not training or std == 0.0:
        return input
    return input + normal_noise(input, 0.0, std, generator=generator,
                                batch_dim=batch_first(input))
