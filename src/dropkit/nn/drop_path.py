"""Stochastic depth module; see :mod:`dropkit.functional.drop_path`."""

from __future__ import annotations

import torch
from torch import Tensor

from dropkit.errors import UsageError, UsageTypeError
from dropkit.functional.drop_path import drop_path
from dropkit.nn._base import RateModule

__all__ = ["DropPath"]


class DropPath(RateModule):
    """Drop a residual branch per sample; a drop-in for timm's ``DropPath`` and
    torchvision's ``StochasticDepth``. See :func:`dropkit.functional.drop_path`.

    Both peers' signatures work: timm's ``DropPath(drop_prob=0.1)`` and
    ``DropPath(0.1, False)`` (the second positional a bool: ``scale_by_keep``), and
    torchvision's ``StochasticDepth(0.1, "row")`` (the second positional a str: ``mode``).
    ``drop_prob`` reads and sets the rate too, as timm's code does.

    Args:
        p: probability of dropping the branch (timm's ``drop_prob``). Default: 0.0 (as timm).
        mode: ``"row"`` (per sample) or ``"batch"``; a bool here is timm's positional
            ``scale_by_keep``. Default: ``"row"``.
        scale_by_keep: divide kept rows by ``1 - p``. Default: True.
        drop_prob: keyword-only, timm's name for ``p``; give one of the two.
        generator: keyword-only source of randomness.
    """

    def __init__(
        self,
        p: float | None = None,
        mode: str | bool = "row",
        scale_by_keep: bool | None = None,
        *,
        drop_prob: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if p is not None and drop_prob is not None:
            raise UsageTypeError(f"DropPath: got both `p` ({p!r}) and its timm name `drop_prob` "
                            f"({drop_prob!r}); expected one of them")
        if isinstance(mode, bool):  # timm's DropPath(drop_prob, scale_by_keep)
            if scale_by_keep is not None:
                raise UsageTypeError("DropPath: got `scale_by_keep` twice (the second positional "
                                f"{mode!r} is timm's scale_by_keep, and scale_by_keep="
                                f"{scale_by_keep!r}); expected it once")
            scale_by_keep, mode = mode, "row"
        if mode not in ("row", "batch"):
            raise UsageError(f"DropPath: expected `mode` to be 'row' or 'batch', got mode={mode!r}")
        rate = p if p is not None else drop_prob
        super().__init__(0.0 if rate is None else rate, generator=generator)
        self.mode = mode
        self.scale_by_keep = True if scale_by_keep is None else scale_by_keep

    @property
    def drop_prob(self) -> float:
        """timm's name for ``p``."""
        return self.p

    @drop_prob.setter
    def drop_prob(self, value: float) -> None:
        self.p = value

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
