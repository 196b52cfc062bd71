"""Alpha dropout modules: thin wrappers of :mod:`dropkit.functional.alpha_dropout`."""

from __future__ import annotations

from torch import Tensor

from dropkit.functional import alpha_dropout, feature_alpha_dropout
from dropkit.nn._base import ElementwiseRateModule, InplaceRateModule

__all__ = ["AlphaDropout", "FeatureAlphaDropout"]


class AlphaDropout(ElementwiseRateModule):
    """Alpha dropout for SELU networks; see :func:`dropkit.functional.alpha_dropout`.

    Args:
        p, inplace, generator: as :class:`dropkit.nn.Dropout`.
        backend, seed_per_rank: as :class:`dropkit.nn.Dropout`; ``"seeded"`` is
            :func:`dropkit.seeded.alpha_dropout`. Default: ``"torch"``, True.
    """

    def forward(self, input: Tensor) -> Tensor:
        return self._elementwise(input, alpha_dropout, "alpha_dropout")


class FeatureAlphaDropout(InplaceRateModule):
    """Channel alpha dropout; see :func:`dropkit.functional.feature_alpha_dropout`."""

    def forward(self, input: Tensor) -> Tensor:
        return feature_alpha_dropout(
            input, self.p, self.training, self.inplace, generator=self.generator
        )
