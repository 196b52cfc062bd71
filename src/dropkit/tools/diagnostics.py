"""Diagnostics for the classic dropout pitfalls, and a guard against dropout at test time.

Papers:
    Li, Chen, Hu & Yang 2019, "Understanding the Disharmony between Dropout and Batch
    Normalization by Variance Shift" (``dropout-before-batchnorm``, ``variance_shift``).
    Srivastava et al. 2014 (rates), Gal & Ghahramani 2016 (RNN dropout).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dropkit._torch_compat import BatchNormBase
from dropkit._trace import (
    Call,
    call_model,
    no_grad_pass,
    only_training,
    recording,
    tensors_in,
    untouched,
)
from dropkit.errors import UsageError
from dropkit.tools.sites import Site, dropout_sites, every_layer, gates_of

__all__ = ["Finding", "diagnose", "variance_shift", "inference_guard"]

HIGH_RATE = 0.8


@dataclass(frozen=True)
class Finding:
    """One problem :func:`diagnose` found: a stable ``code``, the module, and what to do."""

    code: str
    module: str
    message: str


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


def _site_of(call: Call, sites: list[Site]) -> Site | None:
    """The site a recorded dropout call belongs to (its own module's, or the one whose
    gate made it at that rate)."""
    for s in sites:
        if s.kind == "module" and s.module is call.module:
            return s
    for s in sites:
        if s.rate == call.p and any(g is call.module for _, g in s.gates):
            return s
    return None


Shapes = dict[str, tuple[tuple[int, ...], ...]]  # a LayerDrop block: its in and out shapes


def _tag_output(tagged: dict[Any, str], name: str, out: Any) -> Any:
    """``out`` with each tensor's autograd node recorded in ``tagged`` as ``name``'s. A view
    gives each site's output its own node, even at p = 0."""
    views = [t.view_as(t) if t.requires_grad else t for t in tensors_in(out)]
    for v in views:
        if v.grad_fn is not None:
            tagged[v.grad_fn] = name
    if isinstance(out, Tensor):
        return views[0]
    if isinstance(out, tuple) and len(views) == len(out):
        return tuple(views)
    return out


def _graph_hooks(model: nn.Module, sites: list[Site], tagged: dict[Any, str],
                 feeds: set[tuple[str, str]], reshaped: Shapes) -> list[Any]:
    """The hooks of :func:`_observe_graph`: dropout modules tag their outputs, BatchNorm
    layers record which tags reach them, LayerDrop's blocks record a change of shape."""
    from dropkit.nn.layer_drop import LayerDrop

    def shape_check(name: str):
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            if args and isinstance(args[0], Tensor) and isinstance(out, Tensor) \
                    and args[0].shape != out.shape:
                reshaped.setdefault(name, (tuple(args[0].shape), tuple(out.shape)))

        return hook

    def tag(name: str):
        return lambda module, args, out: _tag_output(tagged, name, out)

    def check(name: str):
        def hook(module: nn.Module, args: Any) -> None:
            for t in tensors_in(args):
                for source in _reaches(t.grad_fn, tagged):
                    feeds.add((source, name))

        return hook

    handles = [s.module.register_forward_hook(tag(s.name)) for s in sites
               if s.kind == "module"]
    for name, m in model.named_modules():
        if isinstance(m, BatchNormBase):
            handles.append(m.register_forward_pre_hook(check(name)))
        if isinstance(m, LayerDrop):
            for i, block in enumerate(m.layers):
                label = f"{name}.layers.{i}" if name else f"layers.{i}"
                handles.append(block.register_forward_hook(shape_check(label)))
    return handles


def _observe_graph(model: nn.Module, example_input: Any, sites: list[Site]
                   ) -> tuple[set[tuple[str, str]], set[str], Shapes]:
    """One forward pass (every layer run): which dropout site reaches which BatchNorm,
    which is the output, and which block of a LayerDrop changes its input's shape.
    Dropout modules are tagged by forward hooks, functional and attention dropout by the
    recorded call that drew it."""
    tagged: dict[Any, str] = {}  # autograd node of a site's output -> its name
    feeds: set[tuple[str, str]] = set()
    reshaped: Shapes = {}  # block -> (input, output) shape

    def tag_call(call: Call) -> Any:
        site = _site_of(call, sites) if call.p is not None else None
        if site is None or site.kind == "module":
            return None  # a dropout module's output is tagged by its own hook
        return _tag_output(tagged, site.name, call.output)

    handles = _graph_hooks(model, sites, tagged, feeds, reshaped)
    x = example_input
    if isinstance(x, Tensor) and x.is_floating_point():
        x = x.detach().requires_grad_(True)  # so every tensor after it has a graph
    try:
        with ExitStack() as stack:
            stack.enter_context(torch.enable_grad())
            stack.enter_context(untouched(model))
            stack.enter_context(only_training(model, gates_of(sites)))
            stack.enter_context(every_layer(sites))
            stack.enter_context(recording(model, tag_call))
            out = call_model(model, x)
    finally:
        for h in handles:
            h.remove()
    outputs = {tagged[t.grad_fn] for t in tensors_in(out) if t.grad_fn in tagged}
    return feeds, outputs, reshaped


def _always_on(model: nn.Module, example_input: Any) -> list[Call]:
    """Dropout calls that still draw with every module of ``model`` in eval."""
    calls: list[Call] = []
    with untouched(model):
        no_grad_pass(model, example_input, [], calls.append, {})
    seen: dict[tuple[str, str], Call] = {}
    for c in calls:
        if c.p is not None and c.samples:
            seen.setdefault((c.owner, c.where), c)
    return list(seen.values())


def diagnose(model: nn.Module, example_input: Any) -> list[Finding]:
    """Find the classic dropout pitfalls in ``model``, tracing its forward pass.

    Codes: ``dropout-before-batchnorm``, ``high-rate`` (p >= 0.8), ``dropout-on-output``,
    ``inactive-dropout`` (a dropout module with p = 0), ``lstm-dropout-single-layer``,
    ``functional-dropout-always-on`` (a dropout call that draws with the whole model in
    eval, such as ``F.dropout(x, p)`` without ``training=``), ``layerdrop-shape-change``
    (a block of a :class:`dropkit.nn.LayerDrop` that changes its input's shape). Every
    dropout site counts (:func:`dropkit.dropout_sites`), functional and attention
    dropout included. The
    passes run with dropout sampling and every other module in eval, so BatchNorm's
    running statistics, every module's mode and every random stream (the global ones
    and each generator a module holds) are left exactly as they were.

    Args:
        model: the model to inspect.
        example_input: one valid input (a batch) for ``model``: a tensor, a tuple of
            positional arguments or a mapping of keyword arguments.

    Returns:
        The findings in the order of the sites (or modules) they concern.
    """
    sites = dropout_sites(model, example_input)
    feeds, outputs, reshaped = _observe_graph(model, example_input, sites)
    return [*(f for s in sites for f in _site_findings(s, feeds, outputs)),
            *_rnn_findings(model), *_layerdrop_findings(reshaped),
            *_always_on_findings(model, example_input)]


def _site_findings(s: Site, feeds: set[tuple[str, str]], outputs: set[str]
                   ) -> list[Finding]:
    """What one site's rate, kind and place in the graph say."""
    findings: list[Finding] = []
    p = s.rate
    label = s.name or "<model>"
    for source, bn in sorted(feeds):
        if source == s.name:
            findings.append(Finding(
                "dropout-before-batchnorm", s.name,
                f"dropout {label!r} (p={p:g}) feeds BatchNorm {bn!r}: BatchNorm's running "
                "variance is learned with dropout's extra variance, which is gone at test "
                "time, so test activations are scaled wrongly (Li et al. 2019, variance "
                "shift). Move dropout after the last BatchNorm (e.g. only before the "
                "classifier), or measure the damage with dropkit.variance_shift.",
            ))
    if s.name in outputs:
        findings.append(Finding(
            "dropout-on-output", s.name,
            f"dropout {label!r} is the model's last operation: it zeroes outputs (logits or "
            "predictions) directly, which no later layer can compensate. Remove it; "
            "dropout belongs after hidden layers (Srivastava et al. 2014 drop hidden "
            "and input units, never the outputs).",
        ))
    if s.is_probability and p >= HIGH_RATE:
        findings.append(Finding(
            "high-rate", s.name,
            f"dropout {label!r} drops {p:.0%} of its units: the layer keeps too little "
            "capacity and training is slow and noisy. Srivastava "
            "et al. 2014 use 0.5 for hidden units and 0.2 for inputs; lower p, or widen "
            "the layer by 1/(1-p) if you need this much noise.",
        ))
    if s.kind == "module" and s.is_probability and p == 0.0:
        findings.append(Finding(
            "inactive-dropout", s.name,
            f"dropout {label!r} has p=0 and does nothing. Remove it, or give it a rate "
            "(dropkit.set_rate) or a schedule (dropkit.DropoutScheduler).",
        ))
    return findings


def _rnn_findings(model: nn.Module) -> list[Finding]:
    """torch RNNs whose ``dropout`` does nothing (one layer)."""
    findings = []
    for name, m in model.named_modules():
        variational = hasattr(type(m), "rate_attributes")  # dropkit's: its dropout acts
        if isinstance(m, nn.RNNBase) and not variational and m.dropout > 0 \
                and m.num_layers == 1:
            findings.append(Finding(
                "lstm-dropout-single-layer", name,
                f"{type(m).__name__} {name!r} has dropout={m.dropout:g} but num_layers=1: torch "
                "applies it only between stacked layers, so it does nothing. Use "
                f"dropkit.nn.Variational{'GRU' if isinstance(m, nn.GRU) else 'LSTM'} "
                "(dropout on the inputs and the recurrent state, one mask per sequence: "
                "Gal & Ghahramani 2016), dropkit.nn.LockedDropout on the inputs and outputs, "
                "or dropkit.nn.DropConnect on 'weight_hh_l0' (AWD-LSTM).",
            ))
    return findings


def _layerdrop_findings(reshaped: Shapes) -> list[Finding]:
    return [Finding(
        "layerdrop-shape-change", block,
        f"LayerDrop block {block!r} turns its input of shape {before} to {after}: when "
        "LayerDrop skips it in training, the next block receives the wrong shape. "
        "LayerDrop needs blocks that keep their input's shape, as residual blocks do "
        "(Fan et al. 2019 drop whole transformer layers); leave this block out of it.",
    ) for block, (before, after) in reshaped.items()]


def _always_on_findings(model: nn.Module, example_input: Any) -> list[Finding]:
    findings = []
    for c in _always_on(model, example_input):
        where = f"module {c.owner!r}" if c.owner else "the model's own forward"
        findings.append(Finding(
            "functional-dropout-always-on", c.owner,
            f"{c.function} with p={c.p:g} in the code of {where} ({type(c.module).__name__}, "
            f"{c.where}) drops even with the model in eval: dropout left on at test time. "
            "torch's functional dropout defaults to training=True; pass "
            "training=self.training (or use a dropout module).",
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
    bns = [(n, m) for n, m in work.named_modules() if isinstance(m, BatchNormBase)]
    if not bns:
        raise UsageError("variance_shift: the model has no BatchNorm layer to measure")
    seen: dict[str, Tensor] = {}

    def record(name: str):
        def hook(module: nn.Module, args: Any) -> None:
            seen[name] = _channel_var(args[0])

        return hook

    handles = [m.register_forward_pre_hook(record(n)) for n, m in bns]
    try:
        with torch.no_grad(), untouched(work):
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
    """Inside, any dropout site of ``model`` that samples is an error (or a warning, once).

    Guards against evaluating with dropout still on (Srivastava et al. 2014 evaluate
    the whole network, scaled, never a sample of it)::

        model.eval()
        with dropkit.inference_guard(model):
            accuracy = evaluate(model, test_loader)

    Dropout modules and noise (``GaussianNoise``) are checked as they run; functional
    and attention dropout (``F.dropout``, ``scaled_dot_product_attention(dropout_p=)``)
    by the call that draws, naming the module whose code made it. The functional check
    runs every torch call through a :class:`torch.overrides.TorchFunctionMode`: a
    debugging aid, slower than a plain evaluation.

    Args:
        model: the model to guard.
        action: ``"raise"`` a RuntimeError at the first sampling dropout, or ``"warn"``
            once with a RuntimeWarning.
    """
    if action not in ("raise", "warn"):
        raise UsageError(
            f"inference_guard: expected `action` to be 'raise' or 'warn', got action={action!r}"
        )
    warned: list[str] = []

    def report(message: str) -> None:
        if action == "raise":
            raise RuntimeError(f"inference_guard: {message}")
        if not warned:
            warned.append(message)
            warnings.warn(f"inference_guard: {message}", RuntimeWarning, stacklevel=3)

    def guard(site: Site):
        def hook(module: nn.Module, args: Any) -> None:
            if module.training and site.rate > 0:
                report(f"dropout {site.name!r} ({type(module).__name__}) sampled during "
                       "inference because it is in training mode; call model.eval() before "
                       "evaluating")

        return hook

    def on_call(call: Call) -> None:
        if call.p is None or not call.samples:
            return
        where = f"module {call.owner!r}" if call.owner else "the model's own forward"
        kind = type(call.module).__name__
        if call.module.training:
            report(f"{call.function} (p={call.p:g}) sampled during inference in the code of "
                   f"{where} ({kind}) because that module is in training mode; call "
                   "model.eval() before evaluating")
        else:
            report(f"{call.function} (p={call.p:g}) sampled during inference in the code of "
                   f"{where} ({kind}, {call.where}) although that module is in eval: the "
                   "call is not gated on it (torch's functional dropout defaults to "
                   "training=True; pass training=self.training)")

    handles = [s.module.register_forward_pre_hook(guard(s))
               for s in dropout_sites(model) if s.kind == "module"]
    try:
        with recording(model, on_call):
            yield
    finally:
        for h in handles:
            h.remove()
