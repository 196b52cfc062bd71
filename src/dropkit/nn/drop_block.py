"""DropBlock modules; see :mod:`dropkit.functional.drop_block`."""

from __future__ import annotations

import torch
from torch import Tensor

from dropkit._checks import check_int
from dropkit.functional import drop_block2d, drop_block3d
from dropkit.nn._base import RateModule

__all__ = ["DropBlock2d", "DropBlock3d"]


class _DropBlockNd(RateModule):
    def __init__(
        self, p: float, block_size: int, *, generator: torch.Generator | None = None
    ) -> None:
        block_size = check_int(type(self).__name__, block_size, "block_size", 1)
        super().__init__(p, generator=generator)
        self.block_size = block_size

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}"


class DropBlock2d(_DropBlockNd):
    """Drop square blocks of feature maps; see :func:`dropkit.functional.drop_block2d`.

    Args:
        p: target fraction of dropped units.
        block_size: side of a block.
        generator: keyword-only source of randomness.
    """

    def forward(self, input: Tensor) -> Tensor:
        return drop_block2d(
            input, self.p, self.block_size, self.training, generator=self.generator
        )


class DropBlock3d(_DropBlockNd):
    """Drop cubic blocks of volumes; see :func:`dropkit.functional.drop_block3d`."""

    def forward(self, input: Tensor) -> Tensor:
        return drop_block3d(
            input, self.p, self.block_size, self.training, generator=self.generator
        )
