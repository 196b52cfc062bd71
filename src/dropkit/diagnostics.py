"""Diagnostics for the lesson's dropout pitfalls, and a guard against dropout at test time.

Papers:
    Li, Chen, Hu & Yang 2019, "Understanding the Disharmony between Dropout and Batch
    Normalization by Variance Shift" (``dropout-before-batchnorm``, ``variance_shift``).
    Srivastava et al. 2014 (rates), Gal & Ghahramani 2016 (RNN dropout).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from dropkit.mc import mc_mode
from dropkit.rates import find_dropout, get_rate

__all__ = ["Finding", "diagnose", "variance_shift", "inference_guard"]

HIGH_RATE = 0.8


@dataclass(frozen=True)
class Finding:
    """One problem :func:`diagnose` found: a stable ``code``, the module, and what to do."""

    code: str
    module: str
    message: str


def _tensors(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for t in out if isinstance(t, Tensor)]
    return []


def _reaches(start: Any, targets: dict[Any, str]) -> set[str]:
    """Names of the tagged autograd nodes in the graph that produced ``start``."""
    found, seen, stack = set(), set(), [start]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node in targets:
            found.add(targets[node])
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return found


@contextmanager
def _sampling_dropout_only(model: nn.Module) -> Iterator[None]:
    """:func:`dropkit.mc_mode` (dropout samples, BatchNorm in eval, modes restored), with
    every random stream restored too, so a diagnosis draws nothing from the caller's."""
    generators = [
        (g, g.get_state()) for _, m in find_dropout(model)
        if isinstance(g := getattr(m, "generator", None), torch.Generator)
    ]
    try:
        with torch.random.fork_rng(devices=[]), mc_mode(model):
            yield
    finally:
        for g, state in generators:
            g.set_state(state)


def _trace(model: nn.Module, example_input: Any) -> tuple[set[tuple[str, str]], set[str]]:
    """One forward pass: which dropout reaches which BatchNorm, and which is the output."""
    tagged: dict[Any, str] = {}  # autograd node of a dropout's output -> its name
    feeds: set[tuple[str, str]] = set()
    handles = []

    def tag(name: str):
        def hook(module: nn.Module, args: Any, out: Any) -> Any:
            # A view gives each dropout's output its own autograd node, even at p = 0.
            views = [t.view_as(t) if t.requires_grad else t for t in _tensors(out)]
            for v in views:
                if v.grad_fn is not None:
                    tagged[v.grad_fn] = name
            if isinstance(out, Tensor):
                return views[0]
            return out

        return hook

    def check(name: str):
        def hook(module: nn.Module, args: Any) -> None:
            for t in _tensors(args):
                for source in _reaches(t.grad_fn, tagged):
                    feeds.add((source, name))

        return hook

    for name, m in find_dropout(model):
        handles.append(m.register_forward_hook(tag(name)))
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm):
            handles.append(m.register_forward_pre_hook(check(name)))
    x = example_input
    if isinstance(x, Tensor) and x.is_floating_point():
        x = x.detach().requires_grad_(True)  # so every tensor after it has a graph
    try:
        with torch.enable_grad(), _sampling_dropout_only(model):
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    outputs = {tagged[t.grad_fn] for t in _tensors(out) if t.grad_fn in tagged}
    return feeds, outputs


def diagnose(model: nn.Module, example_input: Any) -> list[Finding]:
    """Find the classic dropout pitfalls in ``model``, tracing one forward pass.

    Codes: ``dropout-before-batchnorm``, ``high-rate`` (p >= 0.8), ``dropout-on-output``,
    ``inactive-dropout`` (p = 0), ``lstm-dropout-single-layer``. The pass runs with
    dropout sampling and every other module in eval, so BatchNorm's running statistics,
    every module's mode and the random streams are left exactly as they were.

    Args:
        model: the model to inspect.
        example_input: one valid input (a batch) for ``model``.

    Returns:
        The findings in module order of the dropout (or RNN) they concern.
    """
    findings: list[Finding] = []
    feeds, outputs = _trace(model, example_input)
    for name, m in find_dropout(model):
        p = get_rate(m)
        label = name or "<model>"
        for source, bn in sorted(feeds):
            if source == name:
                findings.append(Finding(
                    "dropout-before-batchnorm", name,
                    f"dropout {label!r} (p={p:g}) feeds BatchNorm {bn!r}: BatchNorm's running "
                    "variance is learned with dropout's extra variance, which is gone at test "
                    "time, so test activations are scaled wrongly (Li et al. 2019, variance "
                    "shift). Move dropout after the last BatchNorm (e.g. only before the "
                    "classifier), or measure the damage with dropkit.variance_shift.",
                ))
        if name in outputs:
            findings.append(Finding(
                "dropout-on-output", name,
                f"dropout {label!r} is the model's last operation: it zeroes outputs (logits or "
                "predictions) directly, which no later layer can compensate. Remove it; "
                "dropout belongs after hidden layers (Srivastava et al. 2014; the lesson's MLP "
                "has none on its output layer).",
            ))
        if p >= HIGH_RATE:
            findings.append(Finding(
                "high-rate", name,
                f"dropout {label!r} drops {p:.0%} of its units: the layer keeps too little "
                "capacity and training is slow and noisy (the lesson's pitfall 2). Srivastava "
                "et al. 2014 use 0.5 for hidden units and 0.2 for inputs; lower p, or widen "
                "the layer by 1/(1-p) if you need this much noise.",
            ))
        if p == 0.0:
            findings.append(Finding(
                "inactive-dropout", name,
                f"dropout {label!r} has p=0 and does nothing. Remove it, or give it a rate "
                "(dropkit.set_rate) or a schedule (dropkit.DropoutScheduler).",
            ))
    for name, m in model.named_modules():
        if isinstance(m, nn.RNNBase) and m.dropout > 0 and m.num_layers == 1:
            findings.append(Finding(
                "lstm-dropout-single-layer", name,
                f"{type(m).__name__} {name!r} has dropout={m.dropout:g} but num_layers=1: torch "
                "applies it only between stacked layers, so it does nothing. Use "
                "dropkit.nn.LockedDropout on the inputs and outputs (Gal & Ghahramani 2016) "
                "or dropkit.nn.DropConnect on 'weight_hh_l0' (AWD-LSTM).",
            ))
    return findings


def _channel_var(x: Tensor) -> Tensor:
    dims = [d for d in range(x.dim()) if d != 1]  # BatchNorm's channel is dim 1
    return x.detach().double().var(dim=dims)


def variance_shift(model: nn.Module, x: Tensor) -> dict[str, float]:
    """For every BatchNorm, its input variance in eval mode over that in train mode.

    The ratio is computed per channel and averaged over channels. About 1 where no
    dropout precedes the BatchNorm; well below 1 where one does, since training-mode
    inputs carry dropout's variance that evaluation-mode inputs lack (Li et al. 2019).
    Measure on a model whose running statistics are trained: a new model's are the
    defaults (mean 0, variance 1). ``model`` is not changed: the passes run on a copy.

    Returns:
        ``{qualified_name: ratio}`` in module order.
    """
    work = copy.deepcopy(model)
    bns = [(n, m) for n, m in work.named_modules() if isinstance(m, _BatchNorm)]
    if not bns:
        raise ValueError("variance_shift: the model has no BatchNorm layer to measure")
    seen: dict[str, Tensor] = {}

    def record(name: str):
        def hook(module: nn.Module, args: Any) -> None:
            seen[name] = _channel_var(args[0])

        return hook

    handles = [m.register_forward_pre_hook(record(n)) for n, m in bns]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            work.eval()
            work(x)
            eval_var = dict(seen)
            work.train()  # the copy's running statistics change; the model's do not
            work(x)
            train_var = dict(seen)
    finally:
        for h in handles:
            h.remove()
    return {n: float((eval_var[n] / train_var[n]).mean()) for n, _ in bns}


@contextmanager
def inference_guard(model: nn.Module, *, action: str = "raise") -> Iterator[None]:
    """Inside, a dropout of ``model`` that samples is an error (or a warning, once).

    Guards the lesson's first pitfall, evaluating with dropout still on::

        model.eval()
        with dropkit.inference_guard(model):
            accuracy = evaluate(model, test_loader)

    Args:
        model: the model to guard.
        action: ``"raise"`` a RuntimeError at the first sampling dropout, or ``"warn"``
            once with a RuntimeWarning.
    """
    if action not in ("raise", "warn"):
        raise ValueError(
            f"inference_guard: expected `action` to be 'raise' or 'warn', got action={action!r}"
        )
    warned: list[str] = []

    def guard(name: str):
        def hook(module: nn.Module, args: Any) -> None:
            rate = getattr(module, "p", getattr(module, "dropout", 0.0))
            if not module.training or float(rate) == 0.0:
                return
            if isinstance(module, nn.RNNBase) and module.num_layers == 1:
                return
            message = (
                f"inference_guard: dropout {name!r} sampled during inference because it is in "
                "training mode; call model.eval() before evaluating (the lesson's pitfall 1)"
            )
            if action == "raise":
                raise RuntimeError(message)
            if not warned:
                warned.append(name)
                warnings.warn(message, RuntimeWarning, stacklevel=2)

        return hook

    sampling = find_dropout(model) + [
        (n, m) for n, m in model.named_modules() if isinstance(m, nn.RNNBase)
    ]
    handles = [m.register_forward_pre_hook(guard(n)) for n, m in sampling]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
