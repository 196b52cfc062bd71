"""Element and channel dropout modules: thin wrappers of :mod:`dropkit.functional.dropout`."""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

from dropkit.functional import dropout, dropout1d, dropout2d, dropout3d
from dropkit.nn._base import InplaceRateModule

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d"]


BACKENDS = ("auto", "torch", "seeded")
_HAS_TRITON = importlib.util.find_spec("triton") is not None  # without importing it


class Dropout(InplaceRateModule):
    """Element dropout; a drop-in for :class:`torch.nn.Dropout` that takes a ``generator``.

    Args:
        p: probability of dropping an element. Default: 0.5.
        inplace: overwrite the input. Default: False.
        generator: keyword-only source of randomness. Default: the global generator.
        backend: ``"torch"`` draws a mask (:func:`dropkit.functional.dropout`);
            ``"seeded"`` draws one seed per call and recomputes the mask from it in backward
            (:func:`dropkit.seeded.dropout`: no mask memory, Triton kernels on CUDA);
            ``"auto"`` is seeded on CUDA when Triton is installed, torch otherwise.
        seed_per_rank: under ``torch.distributed`` the rank enters the seed, so
            data-parallel ranks draw different masks (default). False gives every rank of
            the group the same masks, as tensor parallelism needs.
    """

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        generator: torch.Generator | None = None,
        backend: str = "auto",
        seed_per_rank: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(
                f"Dropout: expected `backend` to be one of {BACKENDS}, got backend={backend!r}"
            )
        super().__init__(p, inplace, generator=generator)
        self.backend = backend
        self.seed_per_rank = seed_per_rank

    def extra_repr(self) -> str:
        extra = "" if self.backend == "auto" else f", backend={self.backend!r}"
        return super().extra_repr() + extra

    def _seeded(self, input: Tensor) -> bool:
        if self.backend == "auto":
            return input.is_cuda and _HAS_TRITON
        return self.backend == "seeded"

    def forward(self, input: Tensor) -> Tensor:
        if self.training and self._seeded(input):
            from dropkit import seeded

            seed = seeded.new_seed(self.generator)
            if self.seed_per_rank:
                seed = seeded.rank_seed(seed)
            return seeded.dropout(input, self.p, True, seed=seed)
        return dropout(input, self.p, self.training, self.inplace, generator=self.generator)


class Dropout1d(InplaceRateModule):
    """Channel dropout of ``(N, C, L)`` / ``(C, L)``; see :func:`dropkit.functional.dropout1d`."""

    def forward(self, input: Tensor) -> Tensor:
        return dropout1d(input, self.p, self.training, self.inplace, generator=self.generator)


class Dropout2d(InplaceRateModule):
    """Spatial dropout of ``(N, C, H, W)`` / ``(C, H, W)``.

    See :func:`dropkit.functional.dropout2d`.
    """

    def forward(self, input: Tensor) -> Tensor:
        return dropout2d(input, self.p, self.training, self.inplace, generator=self.generator)


class Dropout3d(InplaceRateModule):
    """Channel dropout of volumes; see :func:`dropkit.functional.dropout3d`."""

    def forward(self, input: Tensor) -> Tensor:
        return dropout3d(input, self.p, self.training, self.inplace, generator=self.generator)
