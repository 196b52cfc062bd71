"""The three ways to draw T samples: ``vmap`` over samples, the batch tiled T times, a
loop of T passes; chunked, with a chunk halved while the device runs out of memory."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from dropkit.errors import UsageError
from dropkit.inference.sampling import reroute as rerouting
from dropkit.inference.sampling.batch import tile
from dropkit.inference.sampling.failures import out_of_memory
from dropkit.inference.sampling.output import Output, forward
from dropkit.tools.sites import Site

__all__ = ["Run", "chunks", "by_vmap", "by_batch", "by_loop", "sampler", "in_memory"]


def chunks(samples: int, chunk_size: int | None) -> list[int]:
    size = chunk_size or samples
    return [min(size, samples - start) for start in range(0, samples, size)]


Run = Callable[[nn.Module, Any, int, "int | None", Output], Tensor]


def by_vmap(model: nn.Module, x: Any, samples: int, chunk: int | None,
             output: Output, reroute: bool = True) -> Tensor:
    # x enters unbatched: everything before the first dropout runs once, and the first
    # out-of-place draw gives every later tensor a sample dimension.
    with rerouting.VmapSafeDropout() if reroute else nullcontext():
        parts = [
            torch.func.vmap(lambda _: forward(model, x, output), randomness="different")(
                torch.arange(k))
            for k in chunks(samples, chunk)
        ]
    return _joined(parts)


def _joined(parts: list[Tensor]) -> Tensor:
    """The chunks' samples as one tensor: no copy where there is one chunk."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def by_batch(model: nn.Module, x: Any, samples: int, chunk: int | None,
              output: Output) -> Tensor:
    parts = []
    for k in chunks(samples, chunk):
        tiled, n = tile(x, k)
        out = forward(model, tiled, output)
        if out.dim() == 0 or out.shape[0] != k * n:
            raise UsageError(
                f"mc_predict: strategy 'batch' expects the output's dim 0 to be the batch "
                f"({k * n}), got output shape {tuple(out.shape)}"
            )
        parts.append(out.reshape(k, n, *out.shape[1:]))  # (k, N, ...)
    return _joined(parts)


def by_loop(model: nn.Module, x: Any, samples: int, chunk: int | None,
             output: Output) -> Tensor:
    return torch.stack([forward(model, x, output) for _ in range(samples)])


_RUN: dict[str, Run] = {"vmap": by_vmap, "batch": by_batch, "loop": by_loop}


def sampler(strategy: str, sites: list[Site]) -> Run:
    """The run function of ``strategy`` ("vmap", "batch" or "loop") for a model with
    these sites: Monte Carlo prediction and R-Drop draw their passes with it."""
    if strategy == "vmap":
        return functools.partial(by_vmap, reroute=rerouting.reroutes(sites))
    return _RUN[strategy]


def in_memory(run: Run, name: str, model: nn.Module, x: Any, samples: int,
               chunk: int | None, output: Output) -> Tensor:
    """``run``, halving the number of samples drawn at once while the device runs out of
    memory (vectorized samples hold T copies of every activation after the first draw),
    with a warning that names the chunk that fitted."""
    size = chunk or samples
    while True:
        try:
            out = run(model, x, samples, size, output)
            break
        except Exception as error:
            if not out_of_memory(error) or size == 1 or name == "loop":
                raise
        # retried outside the handler: the traceback's frames hold the failed chunk's
        # tensors until it ends
        size = (size + 1) // 2
    if size != (chunk or samples):
        warnings.warn(
            f"mc_predict: strategy {name!r} ran out of memory drawing {chunk or samples} "
            f"samples at once; it drew them {size} at a time (pass chunk_size={size} to "
            "skip the failed tries)", RuntimeWarning, stacklevel=3)
    return out
