"""Embedding dropout module; see :mod:`dropkit.functional.embedding_dropout`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dropkit.errors import UsageTypeError
from dropkit.functional.embedding_dropout import embedding_dropout
from dropkit.nn._base import RateModule

__all__ = ["EmbeddingDropout"]


class EmbeddingDropout(RateModule):
    """Wrap an :class:`torch.nn.Embedding` so that training drops whole word types.

    The wrapped embedding keeps its weights and options (``padding_idx``, ``max_norm``,
    ...); in eval this computes exactly ``embedding(input)``.

    Args:
        embedding: the ``nn.Embedding`` to wrap.
        p: probability of dropping a word type. Default: 0.1.
        generator: keyword-only source of randomness.
    """

    shares_noise_across_batch = True  # one mask over the vocabulary per forward

    def __init__(
        self, embedding: nn.Embedding, p: float = 0.1, *, generator: torch.Generator | None = None
    ) -> None:
        if not isinstance(embedding, nn.Embedding):
            raise UsageTypeError(
                f"EmbeddingDropout: expected an nn.Embedding, got {type(embedding).__name__}"
            )
        super().__init__(p, generator=generator)
        self.embedding = embedding

    def forward(self, input: Tensor) -> Tensor:
        e = self.embedding
        return embedding_dropout(
            input, e.weight, self.p, self.training,
            padding_idx=e.padding_idx, max_norm=e.max_norm, norm_type=e.norm_type,
            scale_grad_by_freq=e.scale_grad_by_freq, sparse=e.sparse, generator=self.generator,
        )
