"""This process's place under ``torch.distributed``: the one home of the rank question."""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["rank", "world", "launched_rank"]


def _grouped() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized()


def rank(group: Any = None) -> int:
    """This process's rank in ``group`` (default: the whole world); 0 without a process
    group."""
    if not _grouped():
        return 0
    dist = torch.distributed
    return dist.get_rank() if group is None else dist.get_rank(group)


def world(group: Any = None) -> tuple[int, int]:
    """(rank, world size) in ``group`` (default: the whole world) under a process group;
    (0, 1) without one."""
    if not _grouped():
        return 0, 1
    dist = torch.distributed
    size = dist.get_world_size() if group is None else dist.get_world_size(group)
    return rank(group), size


def launched_rank() -> int:
    """The rank a launcher such as ``torchrun`` gave this process (its ``RANK``), known
    before any process group exists; 0 when not launched so."""
    return int(os.environ.get("RANK", "0"))
