"""DropConnect: drop weights rather than activations.

Paper: Wan et al. 2013, "Regularization of Neural Networks using DropConnect".
Learned from: AWD-LSTM's ``WeightDrop`` (dropping recurrent weights once per sequence).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dropkit._checks import check_call
from dropkit._fx import leaf_function
from dropkit.mask import bernoulli_dropout

__all__ = ["drop_connect"]


@leaf_function  # one node under torch.fx
def drop_connect(
    weight: Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    rowwise: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Return ``weight`` with each entry dropped with probability ``p``, kept ones scaled.

    The caller uses the result in place of the weight (``F.linear(x, drop_connect(w))``),
    so one mask serves the whole batch, as in Wan et al. 2013's implementation.

    Args:
        weight: a floating-point weight of any shape, output units along dim 0.
        p: probability of dropping a connection. Default: 0.5.
        training: apply when True. Default: True.
        rowwise: drop whole rows (all connections into one output unit) instead of
            single entries. Default: False.
        generator: as in :func:`dropkit.functional.dropout`.

    Shape:
        Mask as ``weight``; ``(out, 1, ...)`` when ``rowwise``.

    Module: :class:`dropkit.nn.DropConnect`, :class:`dropkit.nn.DropConnectLinear`.
    """
    p = check_call("drop_connect", weight, p, training, generator, name="weight")
    rows = tuple(range(1, weight.dim())) if rowwise else ()  # rowwise: (out, 1, ..., 1)
    return bernoulli_dropout(weight, p, training, False, rows, generator, batch_dim=None)
