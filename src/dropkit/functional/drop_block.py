"""DropBlock: drop contiguous square (cubic) regions of feature maps.

Paper: Ghiasi, Lin & Le 2018, "DropBlock: A regularization method for convolutional
networks" (Algorithm 1). Learned from: torchvision ``ops/drop_block.py``, timm
``layers/drop.py``. Unlike torchvision, even block sizes give an output of the input's
size: seeds are block corners, grown by a max pool over a (block_size - 1) padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dropkit._checks import (
    check_call,
    check_int,
    check_ndim,
)
from dropkit._fx import leaf_function
from dropkit.mask import bernoulli_mask, zeros_like_input

__all__ = ["drop_block2d", "drop_block3d"]


def _drop_block(
    fn: str,
    x: Tensor,
    p: float,
    block_size: int,
    training: bool,
    generator: torch.Generator | None,
    spatial_ndim: int,
    expected: str,
) -> Tensor:
    p = check_call(fn, x, p, training, generator)
    block_size = check_int(fn, block_size, "block_size", 1)
    check_ndim(fn, x, (spatial_ndim + 1, spatial_ndim + 2), expected)
    if not training or p == 0.0 or x.numel() == 0:
        return x
    if p == 1.0:
        return zeros_like_input(x)
    batched = x if x.dim() == spatial_ndim + 2 else x.unsqueeze(0)  # (N, C, *spatial)
    spatial = batched.shape[2:]
    size = min(block_size, *spatial)  # a block never exceeds the feature map
    valid = [s - size + 1 for s in spatial]  # where a block's corner may fall
    # gamma makes the expected dropped fraction p (Ghiasi et al. 2018, eq. 1).
    gamma = p * math.prod(spatial) / (size**spatial_ndim * math.prod(valid))
    corners = batched[(Ellipsis,) + tuple(slice(0, v) for v in valid)]  # (N, C, *valid)
    seeds = bernoulli_mask(corners, gamma, generator=generator)
    seeds = F.pad(seeds, [size - 1] * (2 * spatial_ndim))  # (N, C, *(valid + 2 size - 2))
    pool = F.max_pool2d if spatial_ndim == 2 else F.max_pool3d
    dropped = pool(seeds, kernel_size=size, stride=1)  # (N, C, *spatial): 1 inside a block
    keep = 1.0 - dropped
    # Rescale by the kept fraction actually realised; summed in at least float32 so fp16
    # cannot overflow, and clamped so an all-dropped draw gives zeros, not NaN.
    acc = torch.promote_types(keep.dtype, torch.float32)
    scale = keep.numel() / keep.sum(dtype=acc).clamp_min(1.0)
    out = batched * (keep * scale.to(keep.dtype))
    return out if x.dim() == spatial_ndim + 2 else out.squeeze(0)


@leaf_function  # one node under torch.fx
def drop_block2d(
    input: Tensor,
    p: float,
    block_size: int,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Zero ``block_size x block_size`` regions of each channel so that a fraction ``p`` drops.

    Block corners are drawn with rate ``gamma = p H W / (b^2 (H - b + 1)(W - b + 1))`` and
    grown into blocks (overlaps make the realised fraction slightly below ``p``); kept
    units are scaled by the inverse of the kept fraction over the batch.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        p: target fraction of dropped units.
        block_size: side of a block; clamped to the feature map's smallest side.
        training: apply when True. Default: True.
        generator: as in :func:`dropkit.functional.dropout`.

    Shape:
        Mask ``(N, C, H, W)``: one block pattern per sample and channel.

    Module: :class:`dropkit.nn.DropBlock2d`.
    """
    return _drop_block(
        "drop_block2d", input, p, block_size, training, generator, 2,
        "a 3D (C, H, W) or 4D (N, C, H, W) input",
    )


@leaf_function  # one node under torch.fx
def drop_block3d(
    input: Tensor,
    p: float,
    block_size: int,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DropBlock for volumes: cubic blocks; see :func:`drop_block2d`.

    Shape: ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)``.
    Module: :class:`dropkit.nn.DropBlock3d`.
    """
    return _drop_block(
        "drop_block3d", input, p, block_size, training, generator, 3,
        "a 4D (C, D, H, W) or 5D (N, C, D, H, W) input",
    )
