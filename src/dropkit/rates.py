"""Find the dropout modules of a model and set their rates, per layer or all at once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from dropkit._checks import check_probability
from dropkit.nn._base import RateMixin

__all__ = ["find_dropout", "set_rate", "is_dropout", "get_rate"]

RateSpec = float | Mapping[str, float] | Callable[[str, nn.Module], "float | None"]


def is_dropout(module: nn.Module) -> bool:
    """True for torch's dropout modules and every dropkit module whose rate is ``p``."""
    return isinstance(module, (_DropoutNd, RateMixin))


def find_dropout(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified_name, module)`` of every dropout module of ``model``, in module order.

    Covers ``torch.nn.Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout``,
    ``FeatureAlphaDropout`` and every dropkit module with a rate ``p`` (DropPath,
    DropBlock, DropConnect, LockedDropout, ConcreteDropout, ...). ``model`` itself is
    named ``""``.
    """
    return [(name, m) for name, m in model.named_modules() if is_dropout(m)]


def get_rate(module: nn.Module) -> float:
    """The drop probability ``p`` of a dropout module."""
    return float(cast(Any, module).p)


def _allow_one(module: nn.Module) -> bool:
    return getattr(module, "_allow_one", True)


def set_rate(model: nn.Module, rate: RateSpec) -> dict[str, float]:
    """Set the drop probability of dropout modules; return the new rates by name.

    Args:
        model: the model whose dropout modules change.
        rate: one float for every dropout module; a mapping from qualified name to
            float (other modules keep theirs; an unknown name is an error); or a callable
            ``(name, module) -> float | None`` where ``None`` leaves that module alone.

    Every new rate is checked before any module changes: an invalid one raises
    ``ValueError`` naming the module, and the model is left as it was.
    """
    found = find_dropout(model)
    if isinstance(rate, Mapping):
        known = {name for name, _ in found}
        unknown = sorted(set(rate) - known)
        if unknown:
            raise ValueError(
                f"set_rate: {unknown} are not dropout modules of this model; "
                f"expected names among {sorted(known)}"
            )
        plan = {name: rate[name] for name, _ in found if name in rate}
    elif callable(rate):
        plan = {}
        for name, module in found:
            value = rate(name, module)
            if value is not None:
                plan[name] = value
    else:
        plan = {name: rate for name, _ in found}
    modules = dict(found)
    checked = {
        name: check_probability(
            f"set_rate: module {name!r}", value, allow_one=_allow_one(modules[name])
        )
        for name, value in plan.items()
    }
    for name, value in checked.items():
        cast(Any, modules[name]).p = value
    return checked
