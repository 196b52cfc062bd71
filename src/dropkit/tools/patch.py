"""Keep dropout sampling in eval, for tools that call the model themselves; and undo it.

Learned from baal's ``patch_module`` / ``unpatch_module`` (symmetric pair, in-place flag,
a warning when nothing changed). Unlike baal, nothing is replaced: the module that
gates each dropout site (:mod:`dropkit.tools.sites`: the dropout module itself, or the
attention module whose code calls functional dropout) gets a pair of hooks that put
it in training mode for its own forward only, so ``unpatch`` restores the model
exactly and every other module (BatchNorm) keeps its mode.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

from torch import nn

from dropkit.tools.sites import Site, dropout_sites, gates_of, on_first_call

__all__ = ["patch", "unpatch", "is_patched"]

_HANDLES = "_dropkit_patch_handles"
_PENDING = "_dropkit_patch_discovery"  # the discovery that waits for the next call


def _force_training(module: nn.Module, args: Any) -> None:
    module.__dict__["_dropkit_was_training"] = module.training
    module.training = True


def _restore_training(module: nn.Module, args: Any, output: Any) -> None:
    module.training = module.__dict__.pop("_dropkit_was_training")


def is_patched(module: nn.Module) -> bool:
    return _HANDLES in module.__dict__


def patch(model: nn.Module, inplace: bool = True, *, example_input: Any = None) -> nn.Module:
    """Make every dropout site of ``model`` sample even when the model is in eval.

    Args:
        model: the model to patch.
        inplace: patch ``model`` itself; False patches and returns a deep copy.
        example_input: optional input for a discovery pass, which finds the modules
            whose code reads a child's rate in a fused call (see :func:`dropkit.mc_mode`).
            Without it, the pass runs on the arguments of the model's next call.

    Returns:
        The patched model. Warns (UserWarning) when it has no module to patch.
    """
    target = model if inplace else copy.deepcopy(model)
    count = _patch_gates(dropout_sites(target, example_input))
    lazy = example_input is None
    if count == 0:
        hint = " (the discovery pass at its next call may still find some)" if lazy else ""
        warnings.warn(f"patch: no dropout site to patch was found{hint}", UserWarning,
                      stacklevel=2)
    if lazy and _PENDING not in target.__dict__:
        def later(sites: list[Site]) -> None:
            target.__dict__.pop(_PENDING, None)
            _patch_gates(sites)

        target.__dict__[_PENDING] = on_first_call(target, later)
    return target


def _patch_gates(sites: list[Site]) -> int:
    count = 0
    for m in gates_of(sites):
        if is_patched(m):
            continue
        m.__dict__[_HANDLES] = (
            m.register_forward_pre_hook(_force_training),
            m.register_forward_hook(_restore_training, always_call=True),
        )
        count += 1
    return count


def unpatch(model: nn.Module, inplace: bool = True) -> nn.Module:
    """Undo :func:`patch` exactly. Warns (UserWarning) when nothing was patched."""
    target = model if inplace else copy.deepcopy(model)
    pending = target.__dict__.pop(_PENDING, None)
    if pending is not None:
        pending.remove()
    count = int(pending is not None)
    for m in target.modules():
        handles = m.__dict__.pop(_HANDLES, None)
        if handles is not None:
            for h in handles:
                h.remove()
            count += 1
    if count == 0:
        warnings.warn("unpatch: no patched module was found", UserWarning, stacklevel=2)
    return target
