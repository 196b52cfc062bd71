"""Every private name of torch that dropkit reaches, behind one door.

dropkit needs a few things torch does not make public: whether a functorch transform
(``vmap``) is running, the id of the backward pass running now, the saved-tensor hooks
``torch.utils.checkpoint`` installs, the frames of that module's functions (to replay a
checkpointed region's masks), torch's base classes of normalization and dropout
modules, and an asynchronous device assertion. Each is resolved here once, at import;
one that a torch release removed or renamed is recorded in :data:`MISSING` with the
torch version, a call that needs it raises a ``RuntimeError`` saying so, and
``tests/test_torch_compat.py`` fails naming it.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from types import CodeType, FrameType, ModuleType
from typing import Any

import torch

__all__ = ["MISSING", "TORCH_VERSION", "functorch_transforms_active",
           "functorch_interpreter_idle", "assert_async", "graph_task_id",
           "saved_tensor_hooks_active", "checkpoint_region", "NormBase", "BatchNormBase",
           "DropoutNd", "loaded_dynamo", "OpOverload", "argument_names",
           "ONNX_REGISTRATION_LOGGER", "body_under_mode", "TorchDispatchMode"]

TORCH_VERSION = torch.__version__
#: Private torch names this torch lacks: name -> what failed.
MISSING: dict[str, str] = {}


def _resolve(name: str, get: Callable[[], Any]) -> Any:
    try:
        return get()
    except (AttributeError, ImportError, StopIteration, TypeError) as error:
        MISSING[name] = f"{type(error).__name__}: {error}"
        return None


def _absent(name: str) -> RuntimeError:
    return RuntimeError(f"dropkit needs torch's private {name}, which torch {TORCH_VERSION} "
                        f"does not have ({MISSING.get(name, 'missing')}); dropkit is tested "
                        "with the torch its pyproject names")


class _Never(torch.nn.Module):
    """Stands for a torch base class this torch lacks: no module is an instance of it."""


_ARE_TRANSFORMS_ACTIVE = _resolve("torch._C._are_functorch_transforms_active",
                                  lambda: torch._C._are_functorch_transforms_active)
_PEEK_INTERPRETER = _resolve("torch._C._functorch.peek_interpreter_stack",
                             lambda: torch._C._functorch.peek_interpreter_stack)
_ASSERT_ASYNC = _resolve("torch._assert_async", lambda: torch._assert_async)
_GRAPH_TASK_ID = _resolve("torch._C._current_graph_task_id",
                          lambda: torch._C._current_graph_task_id)
_TOP_SAVED_HOOKS = _resolve("torch._C._autograd._top_saved_tensors_default_hooks",
                            lambda: torch._C._autograd._top_saved_tensors_default_hooks)
NormBase: type[torch.nn.Module] = _resolve("torch.nn.modules.batchnorm._NormBase",
                          lambda: torch.nn.modules.batchnorm._NormBase) or _Never
BatchNormBase: type[torch.nn.Module] = _resolve("torch.nn.modules.batchnorm._BatchNorm",
                               lambda: torch.nn.modules.batchnorm._BatchNorm) or _Never
DropoutNd: type[torch.nn.Module] = _resolve("torch.nn.modules.dropout._DropoutNd",
                           lambda: torch.nn.modules.dropout._DropoutNd) or _Never


class _NoOp:
    """Stands for the op class this torch lacks: no graph target is an instance of it."""


#: The class of an ATen op's overload, a graph node's target (torch.export's graphs).
OpOverload: Any = _resolve("torch._ops.OpOverload", lambda: torch._ops.OpOverload) or _NoOp


class _NoMode:
    """Stands for torch's dispatch-mode class where this torch lacks it: entered, it sees
    nothing (the check it serves is then listed in ``MISSING``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


#: The base class of a mode that sees every ATen op as it runs (below vmap's batching).
TorchDispatchMode: Any = _resolve("torch.utils._python_dispatch.TorchDispatchMode",
                                  lambda: __import__("torch.utils._python_dispatch", fromlist=[
                                      "TorchDispatchMode"]).TorchDispatchMode) or _NoMode
#: The logger of torch.onnx's notes that torchvision's ops are not installed (a name: a
#: renamed logger only stops the silencing).
ONNX_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"


def body_under_mode(mode: Any, func: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
    """``func``, a function of ``torch.nn.functional`` that a torch function mode is now
    handling, run with ``mode`` active inside it: its own dispatch to modes (the module's
    ``has_torch_function``, read as a global) is skipped, so the calls it makes reach
    ``mode`` (``multi_head_attention_forward``'s dropout does). Inside a mode's handler the
    mode is off, so ``func`` alone would run them unseen."""
    functional: Any = torch.nn.functional
    saved = functional.has_torch_function
    functional.has_torch_function = lambda *_: False
    try:
        with mode:
            return func(*args, **kwargs)
    finally:
        functional.has_torch_function = saved


def argument_names(op: Any) -> list[str]:
    """The argument names of an op overload's schema, in order."""
    return [a.name for a in op._schema.arguments]


def functorch_transforms_active() -> bool:
    """Whether a functorch transform (``vmap``, ``grad``) is running now."""
    if _ARE_TRANSFORMS_ACTIVE is None:
        raise _absent("torch._C._are_functorch_transforms_active")
    return bool(_ARE_TRANSFORMS_ACTIVE())


def functorch_interpreter_idle() -> bool:
    """Whether no functorch interpreter is on the stack (plain eager execution)."""
    if _PEEK_INTERPRETER is None:
        raise _absent("torch._C._functorch.peek_interpreter_stack")
    return _PEEK_INTERPRETER() is None


def assert_async(condition: torch.Tensor, message: str) -> None:
    """A device-side assertion without a host sync."""
    if _ASSERT_ASYNC is None:
        raise _absent("torch._assert_async")
    _ASSERT_ASYNC(condition, message)


def graph_task_id() -> int:
    """The id of the autograd backward pass running now, -1 outside one."""
    if _GRAPH_TASK_ID is None:
        raise _absent("torch._C._current_graph_task_id")
    return int(_GRAPH_TASK_ID())


def saved_tensor_hooks_active() -> bool:
    """Whether default saved-tensor hooks are installed (``use_reentrant=False``)."""
    if _TOP_SAVED_HOOKS is None:
        raise _absent("torch._C._autograd._top_saved_tensors_default_hooks")
    return _TOP_SAVED_HOOKS(False) is not None


# --- torch.utils.checkpoint's frames: the code objects and the local names dropkit reads

def _nested(function: Any, name: str) -> CodeType:
    """The code of function ``name`` defined inside ``function``."""
    return next(c for c in function.__code__.co_consts
                if isinstance(c, CodeType) and c.co_name == name)


def _checkpoint_codes() -> tuple[CodeType, CodeType, CodeType, CodeType]:
    import torch.utils.checkpoint as cp

    return (cp.CheckpointFunction.forward.__code__, cp.CheckpointFunction.backward.__code__,
            inspect.unwrap(cp.checkpoint).__code__,
            _nested(cp._checkpoint_hook.__init__, "unpack_hook"))


_CODES = _resolve("torch.utils.checkpoint internals", _checkpoint_codes)


def checkpoint_region(frame: FrameType) -> tuple[Any, Any] | None:
    """Where ``frame`` is one of ``torch.utils.checkpoint``'s frames that mark a region:
    ``(holder, replay)``, the object the region's kept states live on and, in its
    recompute, the backward pass's id (None in its forward); None for any other frame."""
    if _CODES is None:
        raise _absent("torch.utils.checkpoint internals")
    reentrant_forward, reentrant_backward, checkpoint, unpack_hook = _CODES
    code = frame.f_code
    if code is reentrant_forward:
        return frame.f_locals["ctx"], None
    if code is reentrant_backward:
        return frame.f_locals["ctx"], graph_task_id()
    if code is unpack_hook:  # use_reentrant=False's recompute; `frame`: the checkpoint frame
        return frame.f_locals["frame"], frame.f_locals["gid"]
    if code is checkpoint:
        gen = frame.f_locals.get("gen")  # the forward of use_reentrant=False
        if gen is not None and gen.gi_frame is not None:
            return gen.gi_frame.f_locals["new_frame"], None
    return None


def loaded_dynamo() -> ModuleType | None:
    """``torch._dynamo`` if this process imported it already (a compiled model did):
    importing it costs, and beside Triton's interpreter it can abort the process."""
    return sys.modules.get("torch._dynamo")
