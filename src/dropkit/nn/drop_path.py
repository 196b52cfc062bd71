"""Stochastic depth module; see :mod:`dropkit.functional.drop_path`."""

from __future__ import annotations

import torch
from torch import Tensor

from dropkit.functional.drop_path import drop_path
from dropkit.nn._base import RateModule

__all__ = ["DropPath"]


class DropPath(RateModule):
    """Drop a residual branch per sample; a drop-in for timm's ``DropPath`` and
    torchvision's ``StochasticDepth``. See :func:`dropkit.functional.drop_path`.

    Args:
        p: probability of dropping the branch. Default: 0.0 (as timm).
        mode: ``"row"`` (per sample) or ``"batch"``. Default: ``"row"``.
        scale_by_keep: divide kept rows by ``1 - p``. Default: True.
        generator: keyword-only source of randomness.
    """

    def __init__(
        self,
        p: float = 0.0,
        mode: str = "row",
        scale_by_keep: bool = True,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        if mode not in ("row", "batch"):
            raise ValueError(f"DropPath: expected `mode` to be 'row' or 'batch', got mode={mode!r}")
        super().__init__(p, generator=generator)
        self.mode = mode
        self.scale_by_keep = scale_by_keep

    @property
    def shares_noise_across_batch(self) -> bool:  # type: ignore[override]
        return self.mode == "batch"

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}, scale_by_keep={self.scale_by_keep}"

    def forward(self, input: Tensor) -> Tensor:
        return drop_path(
            input, self.p, self.training,
            mode=self.mode, scale_by_keep=self.scale_by_keep, generator=self.generator,
        )
