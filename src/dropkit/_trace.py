"""A recorded forward pass: which dropout calls a model makes, and whose code makes them.

Real models keep much of their dropout outside dropout modules: ``F.dropout(x, p,
training=self.training)`` and ``scaled_dot_product_attention(..., dropout_p=...)``
inside an attention module, gated on *that module's* ``training`` flag. Only a
forward pass shows which module's code made such a call: a
:class:`torch.overrides.TorchFunctionMode` sees every torch call (its function and
arguments), and forward hooks keep a stack of the modules whose code is running.

Also here: the state such a pass must leave untouched (modes, buffers, every random
stream), and the one switch that puts a chosen set of modules, alone, in training
mode. :mod:`dropkit.tools.sites` builds the registry of dropout sites on these.
"""

from __future__ import annotations

import inspect
import itertools
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from dropkit._torch_compat import loaded_dynamo
from dropkit.errors import UsageTypeError

__all__ = ["Call", "CallArgs", "recording", "untouched", "only_training", "call_model",
           "model_device", "split_inputs"]

Reader = Callable[[tuple[Any, ...], Mapping[str, Any]], tuple[float, bool]]


def _reader(index: int, name: str, default: float | None,
            train_index: int | None, train_name: str | None) -> Reader:
    """Read (rate, training) from a dropout call's positional or keyword arguments."""

    def read(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[float, bool]:
        p = kwargs.get(name, args[index] if len(args) > index else default)
        training = True  # scaled_dot_product_attention has no flag: dropout_p > 0 drops
        if train_index is not None and train_name is not None:
            training = kwargs.get(train_name, args[train_index] if len(args) > train_index
                                  else True)
        return float(p or 0.0), bool(training)

    return read


def _python_reader(fn: Callable[..., Any], name: str, train_name: str) -> Reader:
    params = inspect.signature(fn).parameters
    names = list(params)
    default = params[name].default
    return _reader(names.index(name), name, None if default is inspect.Parameter.empty
                   else default, names.index(train_name), train_name)


# Every torch function that drops at a rate, and where its rate and flag are.
DROPOUT_CALLS: dict[Any, Reader] = {
    **{fn: _python_reader(fn, "p", "training") for fn in (
        F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
        F.feature_alpha_dropout)},
    F.multi_head_attention_forward: _python_reader(
        F.multi_head_attention_forward, "dropout_p", "training"),
    F.scaled_dot_product_attention: _reader(4, "dropout_p", 0.0, None, None),
    **{getattr(torch, name): _reader(1, "p", None, 2, "train") for name in (
        "dropout", "dropout_", "alpha_dropout", "alpha_dropout_", "feature_dropout",
        "feature_dropout_", "feature_alpha_dropout", "feature_alpha_dropout_")},
}

# Raw random draws: evidence that a module's own code samples (LayerDrop's coin, a
# foreign DropPath's mask), though they carry no rate.
RANDOM_DRAWS = frozenset(
    [getattr(torch, n) for n in ("rand", "rand_like", "randn", "randn_like", "bernoulli",
                                 "normal", "poisson", "multinomial", "randint", "randperm")]
    + [getattr(torch.Tensor, n) for n in ("bernoulli_", "bernoulli", "uniform_", "normal_",
                                          "random_", "exponential_", "geometric_",
                                          "cauchy_", "log_normal_")]
)


@dataclass(frozen=True)
class Call:
    """One dropout call (or random draw) seen in a recorded pass.

    ``owner`` is the qualified name of the module whose code made it (``""``: the
    model's own forward), ``p`` the rate passed (None for a raw random draw),
    ``samples`` whether it drew (rate above 0 and its training flag true), ``where``
    the line of code outside torch that made it, ``at`` the recording's clock (seconds,
    or the work done so far) when it returned.
    """

    owner: str
    module: nn.Module
    function: str
    p: float | None
    samples: bool
    where: str
    output: Any
    at: float  # the recording's clock when it returned


_TORCH_DIR = os.path.dirname(torch.__file__)


def _caller() -> str:
    """``file:line`` of the innermost frame outside torch and this recorder."""
    frame = inspect.currentframe()
    while frame is not None:
        path = frame.f_code.co_filename
        if not path.startswith(_TORCH_DIR) and path != __file__:
            return f"{path}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


class _Recorder(TorchFunctionMode):
    def __init__(self, stack: list[tuple[str, nn.Module]], on_call: Callable[[Call], Any],
                 clock: Callable[[], float]):
        super().__init__()
        self.stack = stack
        self.on_call = on_call
        self.clock = clock

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: Mapping[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        read = DROPOUT_CALLS.get(func)
        draw = read is None and func in RANDOM_DRAWS
        if not self.stack or (read is None and not draw):
            return func(*args, **kwargs)
        owner, module = self.stack[-1]
        p, training = read(args, kwargs) if read is not None else (None, True)
        samples = training and (p is None or p > 0.0)
        where = _caller() if read is not None else ""
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        replaced = self.on_call(Call(owner, module, name, p, samples, where, out,
                                     self.clock()))
        return out if replaced is None else replaced


@contextmanager
def recording(model: nn.Module, on_call: Callable[[Call], Any],
              ran: dict[int, bool] | None = None,
              clock: Callable[[], float] = time.perf_counter) -> Iterator[None]:
    """Inside, every dropout call and random draw made by ``model``'s code is passed to
    ``on_call`` (what it returns, if not None, replaces the call's output). ``ran``, if
    given, collects ``id(module) -> training`` of every module whose forward ran."""
    stack: list[tuple[str, nn.Module]] = []
    handles = []

    def push(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            stack.append((name, module))
            if ran is not None:
                ran[id(module)] = ran.get(id(module), False) or module.training

        return hook

    def pop(module: nn.Module, args: Any, out: Any) -> None:
        if stack and stack[-1][1] is module:
            stack.pop()

    try:
        for name, m in model.named_modules():
            handles.append(m.register_forward_pre_hook(push(name)))
            handles.append(m.register_forward_hook(pop, always_call=True))
        with _Recorder(stack, on_call, clock):
            yield
    finally:
        for h in handles:
            h.remove()


def _generators(model: nn.Module) -> list[torch.Generator]:
    """Every generator a module of ``model`` holds as an attribute, each once."""
    found: dict[int, torch.Generator] = {}
    for m in model.modules():
        for value in vars(m).values():
            if isinstance(value, torch.Generator):
                found[id(value)] = value
    return list(found.values())


@contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Inside, run what you like: on exit every module's ``training`` flag, every buffer,
    the global CPU random stream and that of each CUDA device the model lives on,
    Python's and NumPy's global streams, and every generator held by a module are
    exactly as they were."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(m, n, b, b.clone()) for m in model.modules()
               for n, b in m.named_buffers(recurse=False) if b is not None]
    generators = [(g, g.get_state()) for g in _generators(model)]
    devices = sorted({t.device.index or 0 for t in [*model.parameters(), *model.buffers()]
                      if t.is_cuda})
    host = (random.getstate(), np.random.get_state())  # code may draw there (SpecAugment)
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(host[0])
        np.random.set_state(host[1])
        for m, mode in modes:
            m.training = mode
        with torch.no_grad():
            for m, n, b, saved in buffers:
                if getattr(m, n, None) is not b:
                    setattr(m, n, b)
                b.copy_(saved)
        for g, state in generators:
            g.set_state(state)


@contextmanager
def only_training(model: nn.Module, modules: Iterable[nn.Module]) -> Iterator[None]:
    """Inside, exactly ``modules`` are in training mode (each alone, not its children:
    a layer wrapped by DropConnect, a BatchNorm beside attention, stay in eval); on
    exit, also after an exception, every flag is what it was."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        if any(mode for _, mode in modes):  # an eval model skips the recursive eval()
            model.eval()
        for m in modules:
            m.training = True
        yield
    finally:
        for m, mode in modes:
            if m.training is not mode:  # Module.__setattr__ is slow: set what changed
                m.training = mode


@dataclass(frozen=True)
class CallArgs:
    """Positional and keyword arguments of one model call, as a forward hook sees them."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def split_inputs(fn: str, x: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A model's input as ``(args, kwargs)``: a tuple is the positional arguments, a
    mapping (an HF ``BatchEncoding``) the keyword arguments, anything else the one
    positional argument."""
    if isinstance(x, CallArgs):
        return x.args, x.kwargs
    if isinstance(x, tuple):
        return x, {}
    if isinstance(x, Mapping):
        keys = [k for k in x if not isinstance(k, str)]
        if keys:
            raise UsageTypeError(f"{fn}: expected a mapping input to have str keys (keyword "
                            f"arguments), got keys {keys!r}")
        return (), dict(x)
    return (x,), {}


def call_model(model: nn.Module, x: Any) -> Any:
    """``model`` called on ``x`` read by :func:`split_inputs`."""
    args, kwargs = split_inputs("call_model", x)
    return model(*args, **kwargs)


def _compiled(model: nn.Module) -> bool:
    """Whether ``model`` holds a ``torch.compile``'d module. Dynamo is looked up only if
    this process imported it already (a compiled model did): importing it costs, and
    beside Triton's interpreter it can abort the process at exit."""
    dynamo = loaded_dynamo()
    if dynamo is None:
        return False
    kind = dynamo.eval_frame.OptimizedModule
    return any(isinstance(m, kind) for m in model.modules())


def no_grad_pass(model: nn.Module, x: Any, on: Iterable[nn.Module],
                 on_call: Callable[[Call], Any], ran: dict[int, bool],
                 clock: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """One recorded pass under ``no_grad`` with exactly ``on`` in training mode; returns
    the clock at its start and end."""
    with ExitStack() as stack:
        if _compiled(model):  # run eagerly: Dynamo would trace the recorder's hooks
            stack.enter_context(torch.compiler.set_stance("force_eager"))
        stack.enter_context(torch.no_grad())
        stack.enter_context(only_training(model, on))
        stack.enter_context(recording(model, on_call, ran, clock))
        start = clock()
        call_model(model, x)
        return start, clock()


def tensors_in(value: Any) -> list[Tensor]:
    """The tensors directly inside ``value`` (a tensor, a tuple/list, a mapping's values)."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for t in value if isinstance(t, Tensor)]
    if isinstance(value, Mapping):
        return [t for t in value.values() if isinstance(t, Tensor)]
    return []


def model_device(model: nn.Module, x: Any = None) -> torch.device:
    """Where a model's work runs: the device of its first parameter or buffer, else of the
    input ``x``'s first tensor, else the CPU."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    if first is None and x is not None:
        args, kwargs = split_inputs("model_device", x)
        first = next((t for t in [*args, *kwargs.values()] if isinstance(t, Tensor)), None)
    return first.device if first is not None else torch.device("cpu")
