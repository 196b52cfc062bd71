"""Alpha dropout modules: thin wrappers of :mod:`dropkit.functional.alpha_dropout`."""

from __future__ import annotations

from torch import Tensor

from dropkit.functional import alpha_dropout, feature_alpha_dropout
from dropkit.nn._base import InplaceRateModule

__all__ = ["AlphaDropout", "FeatureAlphaDropout"]


class AlphaDropout(InplaceRateModule):
    """Alpha dropout for SELU networks; see :func:`dropkit.functional.alpha_dropout`."""

    def forward(self, input: Tensor) -> Tensor:
        return alpha_dropout(input, self.p, self.training, self.inplace, generator=self.generator)


class FeatureAlphaDropout(InplaceRateModule):
    """Channel alpha dropout; see :func:`dropkit.functional.feature_alpha_dropout`."""

    def forward(self, input: Tensor) -> Tensor:
        return feature_alpha_dropout(
            input, self.p, self.training, self.inplace, generator=self.generator
        )
