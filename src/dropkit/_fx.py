"""dropkit under ``torch.fx``: each module one ``call_module`` node, each function one
``call_function`` node, as torch's dropout is.

torch.fx's default tracer keeps torch.nn's modules as leaves: ``nn.Dropout`` is one
node, and the traced ``GraphModule`` still switches it with ``.train()``/``.eval()``.
torchvision asks the same of ``StochasticDepth`` and ``DropBlock`` (``test_is_leaf_node``),
and FX feature extraction and quantization rely on it. dropkit's modules do the same
here: a forward that receives a ``Proxy`` records a ``call_module`` node instead of
running, so the traced graph calls the module itself, training flag and all. A
function called on a ``Proxy`` records one ``call_function`` node (what
``torch.fx.wrap`` does for the caller's module, done here for every caller), so its
argument checks run when the graph runs, never on proxies. Only a module traced as the
root itself runs its forward under tracing (the tracer has no parent to call it from);
its functional call is then one node, with the training flag of tracing time, as torch's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from torch.fx import Proxy, Tracer

__all__ = ["leaf_function", "TracedAsLeaf", "first_proxy"]

Fn = TypeVar("Fn", bound=Callable[..., Any])


def first_proxy(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Proxy | None:
    """The first ``torch.fx.Proxy`` among the arguments, if tracing."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, Proxy):
            return value
    return None


def leaf_function(fn: Fn) -> Fn:
    """Make ``fn`` one ``call_function`` node when torch.fx traces a call to it."""

    @functools.wraps(fn)
    def traced_as_one_node(*args: Any, **kwargs: Any) -> Any:
        proxy = first_proxy(args, kwargs)
        if proxy is not None:
            return proxy.tracer.create_proxy("call_function", traced_as_one_node, args, kwargs)
        return fn(*args, **kwargs)

    return traced_as_one_node  # type: ignore[return-value]


def _leaf_forward(forward: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(forward)
    def forward_or_node(self: Any, *args: Any, **kwargs: Any) -> Any:
        proxy = first_proxy(args, kwargs)
        tracer = proxy.tracer if proxy is not None else None
        if isinstance(tracer, Tracer) and tracer.root is not self:
            return tracer.create_proxy("call_module", tracer.path_of_module(self), args, kwargs)
        return forward(self, *args, **kwargs)

    return forward_or_node


class TracedAsLeaf:
    """Every subclass's ``forward`` is one ``call_module`` node under ``torch.fx``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        forward = cls.__dict__.get("forward")
        if forward is not None:
            cls.forward = _leaf_forward(forward)  # type: ignore[attr-defined]
