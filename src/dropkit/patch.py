"""Keep dropout sampling in eval, for tools that call the model themselves; and undo it.

Learned from baal's ``patch_module`` / ``unpatch_module`` (symmetric pair, in-place flag,
a warning when nothing changed). Unlike baal, nothing is replaced: the module that
gates each dropout site (:mod:`dropkit.sites`: the dropout module itself, or the
attention module whose code calls functional dropout) gets a pair of hooks that put
it in training mode for its own forward only, so ``unpatch`` restores the model
exactly and every other module (BatchNorm) keeps its mode.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

from torch import nn

from dropkit.sites import dropout_sites, gates_of

__all__ = ["patch", "unpatch", "is_patched"]

_HANDLES = "_dropkit_patch_handles"


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
        example_input: optional input for a discovery pass, needed where a module's
            code reads a child's rate in a fused call (see :func:`dropkit.mc_mode`).

    Returns:
        The patched model. Warns (UserWarning) when it has no module to patch.
    """
    target = model if inplace else copy.deepcopy(model)
    count = 0
    for m in gates_of(dropout_sites(target, example_input)):
        if is_patched(m):
            continue
        m.__dict__[_HANDLES] = (
            m.register_forward_pre_hook(_force_training),
            m.register_forward_hook(_restore_training, always_call=True),
        )
        count += 1
    if count == 0:
        warnings.warn("patch: no dropout site to patch was found", UserWarning, stacklevel=2)
    return target


def unpatch(model: nn.Module, inplace: bool = True) -> nn.Module:
    """Undo :func:`patch` exactly. Warns (UserWarning) when nothing was patched."""
    target = model if inplace else copy.deepcopy(model)
    count = 0
    for m in target.modules():
        handles = m.__dict__.pop(_HANDLES, None)
        if handles is not None:
            for h in handles:
                h.remove()
            count += 1
    if count == 0:
        warnings.warn("unpatch: no patched module was found", UserWarning, stacklevel=2)
    return target
