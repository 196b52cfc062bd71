"""Embedding dropout: drop whole words, every occurrence of a dropped id at once.

Papers: Gal & Ghahramani 2016, section 4 (dropping word types rather than tokens);
Merity et al. 2018 (AWD-LSTM's ``embedded_dropout``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dropkit._checks import check_floating, check_generator, check_ndim, check_probability
from dropkit._fx import leaf_function
from dropkit.errors import UsageTypeError
from dropkit.mask import bernoulli_mask, zeros_like_input

__all__ = ["embedding_dropout"]


@leaf_function  # one node under torch.fx
def embedding_dropout(
    input: Tensor,
    weight: Tensor,
    p: float = 0.1,
    training: bool = True,
    *,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Look up ``input`` in ``weight`` with each vocabulary row dropped with probability ``p``.

    Equivalent to AWD-LSTM's masking of the whole weight with a ``(V, 1)`` mask, but the
    mask is applied to the looked-up rows only, so a step costs O(V + tokens * D), not
    O(V * D). Kept rows are scaled by ``1 / (1 - p)``.

    Args:
        input: integer ids of any shape.
        weight: ``(V, D)`` embedding matrix.
        p: probability of dropping a word type. Default: 0.1.
        training: apply dropout when True. Default: True.
        padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse: as in
            :func:`torch.nn.functional.embedding`.
        generator: as in :func:`dropkit.functional.dropout`.

    Shape:
        ``(*)`` ids and ``(V, D)`` weight give ``(*, D)``; mask ``(V, 1)``.

    Module: :class:`dropkit.nn.EmbeddingDropout`.
    """
    p = check_probability("embedding_dropout", p)
    if not isinstance(input, Tensor) or input.is_floating_point() or input.is_complex() \
            or input.dtype == torch.bool:
        got = input.dtype if isinstance(input, Tensor) else type(input).__name__
        raise UsageTypeError(f"embedding_dropout: expected integer ids as `input`, got {got}")
    check_floating("embedding_dropout", weight, "weight", draws=training and p > 0.0)
    check_ndim("embedding_dropout", weight, (2,), "a 2D (num_embeddings, embedding_dim) weight")
    check_generator("embedding_dropout", generator, weight)
    out = F.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
    if not training or p == 0.0:
        return out
    if p == 1.0:
        return zeros_like_input(out)
    keep = 1.0 - p
    rows = bernoulli_mask(weight, keep, (1,), generator=generator,  # (V, 1)
                          batch_dim=None).div_(keep)  # a weight: one draw serves the batch
    return out * F.embedding(input, rows)  # (*, 1): one factor per token, shared over D
