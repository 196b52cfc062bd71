"""Failures of a sampling strategy, named: the module whose code was running, the
error's first line, and the out-of-memory errors that halve a chunk instead."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["out_of_memory", "failing_module", "reason", "vmap_failures_named"]


def out_of_memory(error: BaseException) -> bool:
    """A device's out-of-memory error, or the CPU allocator's (a plain RuntimeError)."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error))


def failing_module(model: nn.Module, error: BaseException) -> str:
    """Name the innermost module of ``model`` whose code was running when ``error`` rose.

    Read from the traceback, so the successful path pays nothing for it.
    """
    names = {id(m): n for n, m in model.named_modules()}
    where = "the model"
    for frame, _ in traceback.walk_tb(error.__traceback__):
        owner = frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names:
            name = names[id(owner)]
            kind = type(owner).__name__
            where = f"module {name!r} ({kind})" if name else f"the model's own forward ({kind})"
    return where


def reason(error: BaseException) -> str:
    """An exception's type and first line."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


@contextmanager
def vmap_failures_named(fn: str, action: str, model: nn.Module,
                        strategy: str) -> Iterator[None]:
    """Inside, an explicit 'vmap' that torch cannot run raises an error naming the module
    (the caller's own errors, ValueError and TypeError, and running out of memory pass
    as they are)."""
    try:
        yield
    except (ValueError, TypeError):
        raise
    except Exception as error:
        if strategy != "vmap" or out_of_memory(error):
            raise
        raise RuntimeError(f"{fn}: strategy 'vmap' cannot {action} "
                           f"{failing_module(model, error)}: {reason(error)}; use 'batch' "
                           "or 'loop'") from error
