"""Argument validation shared by every dropout variant.

Each check raises before any state changes, with a message that names the function
or argument, what was expected and what was received (house rule 5).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor

from dropkit.errors import UsageError, UsageTypeError


def check_probability(fn: str, p: object, *, name: str = "p", allow_one: bool = True) -> float:
    """Return ``p`` as a float after checking it is a drop probability in [0, 1].

    ``allow_one=False`` is for variants whose noise is undefined at p = 1
    (Gaussian dropout's variance p / (1 - p) is infinite there).
    """
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise UsageTypeError(
            f"{fn}: expected `{name}` to be a float drop probability, "
            f"got {type(p).__name__}: {name}={p!r}"
        )
    value = float(p)
    upper_ok = value <= 1.0 if allow_one else value < 1.0
    if math.isnan(value) or value < 0.0 or not upper_ok:
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise UsageError(
            f"{fn}: expected `{name}` to be a drop probability in {interval}, got {name}={p!r}"
        )
    return value


def check_nonnegative(fn: str, value: object, name: str) -> float:
    """Return ``value`` as a float after checking it is finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageTypeError(f"{fn}: expected `{name}` to be a float, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out) or out < 0.0:
        raise UsageError(f"{fn}: expected `{name}` to be a finite value >= 0, got {name}={value!r}")
    return out


def check_int(fn: str, value: object, name: str, minimum: int = 0,
              limit: int | None = None) -> int:
    """Return ``value`` as an int after checking it is one (TypeError: a bool or a float is
    not) and that ``minimum <= value`` (and ``value < limit``) (ValueError)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageTypeError(f"{fn}: expected `{name}` to be an int, got {type(value).__name__}: "
                        f"{name}={value!r}")
    number = int(value)
    if number < minimum or (limit is not None and number >= limit):
        bound = f">= {minimum}" if limit is None else f"in [{minimum}, {limit})"
        raise UsageError(f"{fn}: expected `{name}` to be an int {bound}, got {name}={value!r}")
    return number


def check_floating(fn: str, x: object, name: str = "input", *, draws: bool = True) -> None:
    """Dropout scales by 1 / (1 - p): only real floating-point tensors can hold the result.

    ``draws=False`` (in eval, or at rate 0) checks only that ``x`` is a tensor: such a call
    returns its input unchanged, whatever its dtype, as torch's dropout does.
    """
    if not isinstance(x, Tensor):
        raise UsageTypeError(f"{fn}: expected `{name}` to be a torch.Tensor, got "
                             f"{type(x).__name__}")
    if draws and not x.is_floating_point():
        raise UsageTypeError(
            f"{fn}: expected a floating-point `{name}` (float16, bfloat16, float32 or float64), "
            f"got dtype {x.dtype}"
        )


def check_ndim(fn: str, x: Tensor, allowed: Sequence[int], expected: str) -> None:
    """Reject a rank the function does not define; ``expected`` names the layouts it does."""
    if x.dim() not in allowed:
        raise UsageError(f"{fn}: expected {expected}, got a {x.dim()}D input")


def check_generator(fn: str, generator: object, x: Tensor) -> None:
    """A generator must live on the device the noise is drawn on."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise UsageTypeError(
            f"{fn}: expected `generator` to be a torch.Generator or None, "
            f"got {type(generator).__name__}"
        )
    if generator.device.type != x.device.type:
        raise UsageError(
            f"{fn}: expected a generator on device '{x.device.type}' (the input's), "
            f"got one on '{generator.device.type}'"
        )


def normalize_dims(
    fn: str, dims: object, ndim: int, name: str = "broadcast_dims"
) -> tuple[int, ...]:
    """Turn ``dims`` into sorted non-negative dims of an ``ndim``-D tensor, rejecting repeats."""
    if isinstance(dims, numbers.Integral) and not isinstance(dims, bool):
        dims = (int(dims),)
    if not isinstance(dims, (tuple, list)) or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims
    ):
        raise UsageTypeError(f"{fn}: expected `{name}` to be an int or a tuple of ints, "
                             f"got {dims!r}")
    out = []
    for d in dims:
        if not -ndim <= d < ndim:
            raise UsageError(
                f"{fn}: `{name}` has dim {d}, out of range for a {ndim}D input "
                f"(expected -{ndim} <= dim < {ndim})"
            )
        out.append(int(d) % ndim)
    if len(set(out)) != len(out):
        raise UsageError(f"{fn}: `{name}` repeats a dim: {tuple(dims)}")
    return tuple(sorted(out))


def check_call(fn: str, x: object, p: object, training: bool, generator: object, *,
               name: str = "input", allow_one: bool = True) -> float:
    """The checks every dropout variant makes first; returns ``p`` as a float.

    ``p`` a drop probability, ``x`` a tensor (a floating-point one where the call draws:
    in eval or at p = 0 it is returned unchanged whatever its dtype), and the generator
    on ``x``'s device.
    """
    rate = check_probability(fn, p, allow_one=allow_one)
    check_floating(fn, x, name, draws=training and rate > 0.0)
    check_generator(fn, generator, cast(Tensor, x))  # check_floating proved it a tensor
    return rate
