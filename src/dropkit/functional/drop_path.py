"""Stochastic depth: drop a whole residual branch per sample (or per batch).

Paper: Huang et al. 2016, "Deep Networks with Stochastic Depth".
Learned from: torchvision ``ops/stochastic_depth.py`` (``mode``), timm
``layers/drop.py`` (``drop_path``, ``scale_by_keep``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dropkit._checks import check_call
from dropkit._fx import leaf_function
from dropkit.errors import UsageError
from dropkit.mask import bernoulli_dropout

__all__ = ["drop_path"]

_MODES = ("row", "batch")


@leaf_function  # one node under torch.fx
def drop_path(
    input: Tensor,
    p: float,
    training: bool = True,
    *,
    mode: str = "row",
    scale_by_keep: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Zero the residual branch ``input`` for a random subset of samples.

    Use it on the branch, before the skip connection adds it: ``x + drop_path(f(x), p)``.

    Args:
        input: ``(N, *)``, the output of a residual branch.
        p: probability of dropping the branch.
        training: apply when True. Default: True.
        mode: ``"row"`` draws one decision per sample, ``"batch"`` one for the whole
            batch. Default: ``"row"``.
        scale_by_keep: divide kept rows by ``1 - p``. Default: True.
        generator: as in :func:`dropkit.functional.dropout`.

    Shape:
        Mask ``(N, 1, ..., 1)`` for ``"row"``, ``(1, ..., 1)`` for ``"batch"``.

    Module: :class:`dropkit.nn.DropPath`.
    """
    p = check_call("drop_path", input, p, training, generator)
    if mode not in _MODES:
        raise UsageError(f"drop_path: expected `mode` to be 'row' or 'batch', got mode={mode!r}")
    if mode == "row" and input.dim() == 0:
        raise UsageError(
            "drop_path: mode='row' needs an (N, *) input with a batch dim, got a 0D input"
        )
    first = 1 if mode == "row" else 0
    shared = tuple(range(first, input.dim()))  # row: (N, 1, ..., 1); batch: (1, ..., 1)
    return bernoulli_dropout(input, p, training, False, shared, generator, scale=scale_by_keep)
