"""Alpha dropout: dropout that keeps SELU networks self-normalizing.

Paper: Klambauer et al. 2017, "Self-Normalizing Neural Networks", section 3 (alpha
dropout). Learned from: torch's ``_dropout_impl`` (ATen Dropout.cpp).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dropkit._checks import check_call, check_ndim
from dropkit._fx import leaf_function
from dropkit.mask import batch_first, bernoulli_mask, in_place_ok, zeros_like_input

__all__ = ["alpha_dropout", "feature_alpha_dropout", "alpha_affine", "SELU_ALPHA_PRIME"]

# alpha' = -lambda * alpha of SELU: the value SELU saturates to for very negative inputs.
SELU_ALPHA_PRIME = -1.7580993408473766


def alpha_affine(p: float) -> tuple[float, float]:
    """``(a, b)`` of alpha dropout at a rate ``p`` in (0, 1): kept units become ``a * x + b``,
    dropped ones ``a * alpha' + b``, so standard-normal inputs keep zero mean and unit
    variance."""
    keep = 1.0 - p
    a = 1.0 / math.sqrt(keep * (1.0 + p * SELU_ALPHA_PRIME**2))
    return a, -a * SELU_ALPHA_PRIME * p


def _alpha(
    fn: str,
    x: Tensor,
    p: float,
    training: bool,
    inplace: bool,
    generator: torch.Generator | None,
    feature: bool,
) -> Tensor:
    p = check_call(fn, x, p, training, generator)
    if feature:
        check_ndim(fn, x, range(2, 64), "an (N, C, *) input of at least 2 dims")
    if not training or p == 0.0:
        return x
    if p == 1.0:  # a = 1 / sqrt(0): no affine map exists; torch returns zeros too
        return zeros_like_input(x, inplace)
    # Dropped units are set to alpha' (not 0), then a * y + b restores zero mean and
    # unit variance for standard-normal inputs.
    a, b = alpha_affine(p)
    dims = tuple(range(2, x.dim())) if feature else ()  # feature: mask (N, C, 1, ...)
    mask = bernoulli_mask(x, 1.0 - p, dims, generator=generator,
                          batch_dim=0 if feature else batch_first(x))
    shift = mask.mul(-a * SELU_ALPHA_PRIME).add_(a * SELU_ALPHA_PRIME + b)  # a*alpha'*(1-m) + b
    scale = mask.mul_(a)
    if in_place_ok(inplace):
        return x.mul_(scale).add_(shift)
    return torch.addcmul(shift, x, scale)


@leaf_function  # one node under torch.fx
def alpha_dropout(
    input: Tensor,
    p: float = 0.5,
    training: bool = False,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Alpha dropout for SELU networks.

    .. math::
        y = a \, (m \odot x + \alpha' (1 - m)) + b, \quad
        a = \big((1-p)(1 + p\,\alpha'^2)\big)^{-1/2}, \quad b = -a\,\alpha'\,p

    with :math:`m_i \sim \text{Bernoulli}(1 - p)` and :math:`\alpha' \approx -1.7581`.
    For an input of zero mean and unit variance the output keeps zero mean and unit
    variance. ``p = 1`` returns zeros (as torch does).

    Args:
        input: a floating-point tensor of any shape.
        p: probability of dropping an element. Default: 0.5.
        training: draw only if True. Default: False, as torch's ``alpha_dropout`` (its
            functional dropout defaults to True; its alpha dropouts do not).
        inplace, generator: as in :func:`dropkit.functional.dropout`.

    Module: :class:`dropkit.nn.AlphaDropout`.
    """
    return _alpha("alpha_dropout", input, p, training, inplace, generator, feature=False)


@leaf_function  # one node under torch.fx
def feature_alpha_dropout(
    input: Tensor,
    p: float = 0.5,
    training: bool = False,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Alpha dropout of whole channels: the mask is ``(N, C, 1, ...)``, as in torch.

    Args (``training`` False by default, as torch's) and moments as in
    :func:`alpha_dropout`; the input is ``(N, C, *)``.
    Module: :class:`dropkit.nn.FeatureAlphaDropout`.
    """
    return _alpha("feature_alpha_dropout", input, p, training, inplace, generator, feature=True)
