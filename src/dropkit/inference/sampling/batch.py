"""Replicating the batch: where it gives independent samples (the sites), and where a
model's rows depend on each other (observed, by tiling the input twice)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dropkit._trace import only_training, split_inputs
from dropkit.errors import UsageError
from dropkit.inference.sampling.output import Output, forward
from dropkit.tools.sites import Site, signature

__all__ = ["batchable", "batch_problem", "check_batchable", "over_batch", "tile", "coupling",
           "halves_differ", "check_uncoupled"]


def batchable(sites: list[Site]) -> bool:
    """Whether replicating the batch along dim 0 gives every site's draws independently
    (:func:`check_batchable` names the site where not)."""
    return all(batch_problem(s) is None for s in sites)


def batch_problem(site: Site) -> str | None:
    """Why replicating the input along dim 0 would not give independent samples here."""
    if site.shares_noise_across_batch:
        return "one draw serves its whole batch, so the replicated inputs would share it"
    if site.time_first:
        return "it takes (T, N, ...) sequences, so dim 0 is time, not the batch"
    return None


def check_batchable(fn: str, action: str, sites: list[Site]) -> None:
    """Raise, naming the first site, where replicating the batch cannot ``action``."""
    for s in sites:
        problem = batch_problem(s)
        if problem:
            raise UsageError(f"{fn}: strategy 'batch' cannot {action} {s.describe()}: "
                             f"{problem}; use 'vmap' or 'loop'")


def over_batch(x: Any, batched: Callable[[Tensor], Any],
               other: Callable[[Any], Any] = lambda v: v) -> tuple[Any, int | None]:
    """``x`` in its own structure with ``batched`` applied to every tensor whose dim 0 is
    the batch (the first tensor with a dim sets its size) and ``other`` to the rest; and
    the batch size, None where no tensor has a dim."""
    args, kwargs = split_inputs("mc_predict", x)
    tensors = [t for t in [*args, *kwargs.values()] if isinstance(t, Tensor) and t.dim() > 0]
    n = tensors[0].shape[0] if tensors else None

    def one(v: Any) -> Any:
        return batched(v) if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n \
            else other(v)

    if isinstance(x, Mapping):
        return {key: one(v) for key, v in kwargs.items()}, n
    mapped = tuple(one(v) for v in args)
    return (mapped if isinstance(x, tuple) else mapped[0]), n


def tile(x: Any, k: int) -> tuple[Any, int]:
    """``x`` with every batch tensor repeated ``k`` times along dim 0, and the batch size."""
    tiled, n = over_batch(x, lambda v: v.unsqueeze(0).expand(k, *v.shape).reshape(
        k * v.shape[0], *v.shape[1:]))  # (k N, ...)
    if n is None:
        raise UsageError("mc_predict: strategy 'batch' needs an input with a batch dim 0")
    return tiled, n


# Per model: (signature, why tiling the batch mixes samples, or None).
_COUPLED: weakref.WeakKeyDictionary[nn.Module, tuple[object, str | None]] = (
    weakref.WeakKeyDictionary())


def coupling(model: nn.Module, x: Any, output: Output, key: object) -> str | None:
    """Why the batch strategy would mix samples on this model, observed: the input tiled
    twice, with every flag off, must give an output whose dim 0 doubles and nothing
    else grows, and whose two halves each equal the untiled output (one copy's rows
    unaffected by the other's). None where it does. Cached per signature ``key``."""
    if key is not None:
        key = (key, output if isinstance(output, (str, type(None))) else id(output))
    hit = _COUPLED.get(model)
    if key is not None and hit is not None and hit[0] == key:
        return hit[1]
    problem = _observe_coupling(model, x, output)
    if key is not None:
        _COUPLED[model] = (key, problem)
    return problem


def _observe_coupling(model: nn.Module, x: Any, output: Output) -> str | None:
    try:
        tiled_x, n = tile(x, 2)
    except ValueError as error:  # no tensor with a batch dim
        return str(error).removeprefix("mc_predict: ")
    with torch.no_grad(), only_training(model, []):
        plain = forward(model, x, output)
        tiled = forward(model, tiled_x, output)
    want = (2 * plain.shape[0], *plain.shape[1:]) if plain.dim() else None
    if want is None or plain.shape[0] != n or tuple(tiled.shape) != want:
        return (f"with the batch of {n} tiled twice the output has shape "
                f"{tuple(tiled.shape)}, where dim 0 alone should double from "
                f"{tuple(plain.shape)}")
    if halves_differ(plain, tiled):
        return ("with the batch tiled twice, a copy's outputs change: its rows "
                "depend on the other copy's inputs")
    return None


def halves_differ(plain: Tensor, tiled: Tensor) -> bool:
    """Whether either half of ``tiled`` (the batch tiled twice) differs from ``plain``
    beyond the rounding of a larger matmul (a dropped unit moves an output by far more)."""
    halves = tiled.reshape(2, *plain.shape)  # (2, N, ...)
    scale = plain.abs().max().item() if plain.numel() else 0.0
    return any(not torch.allclose(half, plain, rtol=1e-4, atol=1e-5 * max(scale, 1.0),
                                  equal_nan=True) for half in halves)


def check_uncoupled(fn: str, model: nn.Module, x: Any, output: Output,
                    key: object = ...) -> None:
    """Raise where tiling the batch would mix samples (:func:`coupling`)."""
    problem = coupling(model, x, output, signature(model, x) if key is ... else key)
    if problem is not None:
        raise UsageError(f"{fn}: strategy 'batch' expects the output's dim 0 to be the batch "
                         f"and each row to depend on its own input alone: {problem}; use "
                         "'vmap' or 'loop'")
