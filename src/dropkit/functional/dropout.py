"""Element and channel dropout: the primitive that every Bernoulli variant reduces to.

Papers:
    Srivastava et al. 2014, "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting" (element dropout, inverted scaling as torch does it).
    Tompson et al. 2015, "Efficient Object Localization Using Convolutional Networks"
    (spatial / channel dropout).
Learned from: torch/nn/functional.py (``dropout``, ``dropout1d/2d/3d``), Keras 3's
``noise_shape`` hook.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dropkit._checks import (
    check_call,
    check_ndim,
    normalize_dims,
)
from dropkit._fx import leaf_function
from dropkit.mask import batch_first, bernoulli_dropout

__all__ = ["dropout", "dropout1d", "dropout2d", "dropout3d"]


@leaf_function  # one node under torch.fx
def dropout(
    input: Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    broadcast_dims: int | Sequence[int] = (),
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    .. math::
        y = \frac{m \odot x}{1 - p}, \qquad m_i \sim \text{Bernoulli}(1 - p)

    so that :math:`\mathbb{E}[y] = x`. In evaluation (``training=False``) or with
    ``p = 0`` the input is returned unchanged; with ``p = 1`` the output is zeros.

    Args:
        input: a floating-point tensor.
        p: probability of *dropping* an element (not of keeping it). Default: 0.5.
        training: apply dropout when True. Default: True.
        inplace: write the result into ``input``. Default: False.
        broadcast_dims: dims along which the mask has size 1, i.e. one draw is shared
            there (``(2, 3)`` on ``(N, C, H, W)`` is channel dropout). Default: ().
        generator: source of randomness; ``None`` uses torch's global generator.

    Shape:
        Input: any. Output: same as input. Mask: input's shape with 1 along ``broadcast_dims``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = dropout(torch.ones(2, 4), p=0.5, generator=g)
        >>> sorted(set(y.flatten().tolist())) in ([0.0, 2.0], [0.0], [2.0])
        True

    Module: :class:`dropkit.nn.Dropout`.
    """
    p = check_call("dropout", input, p, training, generator)
    dims = normalize_dims("dropout", broadcast_dims, input.dim())
    return bernoulli_dropout(input, p, training, inplace, dims, generator,
                             batch_dim=batch_first(input))


def _channel_dropout(
    fn: str,
    input: Tensor,
    p: float,
    training: bool,
    inplace: bool,
    generator: torch.Generator | None,
    spatial_ndim: int,
    layout: str,
) -> Tensor:
    p = check_call(fn, input, p, training, generator)
    # A rank of spatial_ndim + 1 is an unbatched (C, *spatial) input, never a batch
    # without channels: torch once reinterpreted 3D inputs to dropout2d silently.
    check_ndim(fn, input, (spatial_ndim + 1, spatial_ndim + 2), layout)
    spatial = tuple(range(input.dim() - spatial_ndim, input.dim()))  # mask: (N, C, 1, ...)
    batched = input.dim() == spatial_ndim + 2
    return bernoulli_dropout(input, p, training, inplace, spatial, generator,
                             batch_dim=0 if batched else None)


@leaf_function  # one node under torch.fx
def dropout1d(
    input: Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Zero whole channels of a 1D signal; see :func:`dropout2d`.

    Shape: ``(N, C, L)`` or unbatched ``(C, L)``; mask ``(N, C, 1)`` / ``(C, 1)``.
    Module: :class:`dropkit.nn.Dropout1d`.
    """
    return _channel_dropout(
        "dropout1d", input, p, training, inplace, generator, 1, "a 2D (C, L) or 3D (N, C, L) input"
    )


@leaf_function  # one node under torch.fx
def dropout2d(
    input: Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Spatial dropout: zero each whole channel with probability ``p``, scale by ``1 / (1 - p)``.

    Adjacent pixels of a feature map are strongly correlated, so element dropout barely
    removes information there; dropping whole maps does (Tompson et al. 2015).

    Args:
        input: ``(N, C, H, W)``, or unbatched ``(C, H, W)``.
        p: probability of dropping a channel. Default: 0.5.
        training, inplace, generator: as in :func:`dropout`.

    Shape:
        Mask ``(N, C, 1, 1)`` (unbatched: ``(C, 1, 1)``); output as input.

    Module: :class:`dropkit.nn.Dropout2d`.
    """
    return _channel_dropout(
        "dropout2d", input, p, training, inplace, generator, 2,
        "a 3D (C, H, W) or 4D (N, C, H, W) input",
    )


@leaf_function  # one node under torch.fx
def dropout3d(
    input: Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Zero whole channels of a volume; see :func:`dropout2d`.

    Shape: ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)``; mask ``(N, C, 1, 1, 1)``.
    Module: :class:`dropkit.nn.Dropout3d`.
    """
    return _channel_dropout(
        "dropout3d", input, p, training, inplace, generator, 3,
        "a 4D (C, D, H, W) or 5D (N, C, D, H, W) input",
    )
