"""Locked (variational) dropout: one mask per sequence, shared over time.

Papers: Gal & Ghahramani 2016, "A Theoretically Grounded Application of Dropout in
Recurrent Neural Networks"; Merity et al. 2018, "Regularizing and Optimizing LSTM
Language Models" (AWD-LSTM's ``LockedDropout``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dropkit._checks import check_call, check_ndim
from dropkit._fx import leaf_function
from dropkit.mask import bernoulli_dropout

__all__ = ["locked_dropout"]


@leaf_function  # one node under torch.fx
def locked_dropout(
    input: Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    batch_first: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Drop the same features at every time step of a sequence.

    Element dropout on an RNN's inputs draws a new mask per step, which injects noise
    the recurrence amplifies; sharing the mask over time is the variational-Bayes
    reading of dropout in RNNs (Gal & Ghahramani 2016).

    Args:
        input: ``(T, N, H)``, ``(N, T, H)`` with ``batch_first=True``, or unbatched ``(T, H)``.
        p: probability of dropping a feature of a sequence. Default: 0.5.
        training: apply dropout when True. Default: True.
        batch_first: the batch is dim 0 and time dim 1. Default: False.
        generator: as in :func:`dropkit.functional.dropout`.

    Shape:
        Mask ``(1, N, H)`` (``(N, 1, H)`` batch first; ``(1, H)`` unbatched).

    Module: :class:`dropkit.nn.LockedDropout`.
    """
    p = check_call("locked_dropout", input, p, training, generator)
    check_ndim(
        "locked_dropout", input, (2, 3),
        "a 3D (T, N, H) / (N, T, H) input or an unbatched 2D (T, H) input",
    )
    time_dim = 1 if batch_first and input.dim() == 3 else 0
    batch_dim = None if input.dim() == 2 else 1 - time_dim  # unbatched (T, H): none
    return bernoulli_dropout(input, p, training, False, (time_dim,), generator,
                             batch_dim=batch_dim)
