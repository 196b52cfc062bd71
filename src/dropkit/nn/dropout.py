"""Element and channel dropout modules: thin wrappers of :mod:`dropkit.functional.dropout`."""

from __future__ import annotations

from torch import Tensor

from dropkit.functional import dropout, dropout1d, dropout2d, dropout3d
from dropkit.nn._base import ElementwiseRateModule, InplaceRateModule

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d"]


class Dropout(ElementwiseRateModule):
    """Element dropout; a drop-in for :class:`torch.nn.Dropout` that takes a ``generator``.

    Args:
        p: probability of dropping an element. Default: 0.5.
        inplace: overwrite the input. Default: False.
        generator: keyword-only source of randomness. Default: the global generator.
        backend: ``"auto"``, ``"torch"`` (:func:`dropkit.functional.dropout`) or
            ``"seeded"`` (:func:`dropkit.seeded.dropout`); see
            :class:`~dropkit.nn._base.SeededBackendMixin`. Default: ``"torch"``.
        seed_per_rank: the rank enters the seed under ``torch.distributed``. Default: True.
    """

    def forward(self, input: Tensor) -> Tensor:
        return self._elementwise(input, dropout, "dropout")


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
