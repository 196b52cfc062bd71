"""Monte Carlo dropout done right: BatchNorm never disturbed, samples vectorized.

``model.train()`` for MC sampling (the common ``mc_dropout_predict`` recipe) also
switches BatchNorm to batch statistics and updates its running averages: wrong
predictions and a corrupted model. Here only the flags that gate a dropout site
(:mod:`dropkit.sites`) are switched on, each alone, and the samples are drawn with
``torch.func.vmap`` so that the network before the first dropout runs once, not T
times. Models that keep dropout in functional calls and attention (transformers,
timm) are found by a discovery pass over the input, and ``mc_predict`` refuses to
return samples that are all identical: that would read as zero uncertainty.

Papers: Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation"; Srivastava et
al. 2014, section 7.5 (Monte Carlo model averaging). Learned from: baal's
``MCDropoutModule``, torch-uncertainty's ``mc_dropout``.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import traceback
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as TF
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

import dropkit.functional as F
from dropkit._checks import check_int
from dropkit._rng import drawing_from, seed_from
from dropkit._trace import (
    DROPOUT_CALLS,
    call_model,
    model_device,
    only_training,
    split_inputs,
    untouched,
)
from dropkit.nn._base import RateMixin
from dropkit.sites import (
    Site,
    discover_cached,
    dropout_sites,
    gates_of,
    on_first_call,
    signature,
)

__all__ = ["mc_mode", "mc_predict", "STRATEGIES", "Choice"]

_LOG = logging.getLogger("dropkit")


@dataclass(frozen=True)
class Choice:
    """The strategy a Monte Carlo call ran, and why (:data:`last_choice`)."""

    strategy: str
    reason: str
    seconds: dict[str, float]  # the predicted time of each strategy timed; {} if none

    def __str__(self) -> str:
        return f"{self.strategy}: {self.reason}"

STRATEGIES = ("auto", "vmap", "batch", "loop")

# "auto" times each strategy on the first call for a model and input signature and keeps
# the fastest (:func:`_measure`): a rule drawn from one kind of model misjudged others
# (a FLOP-share rule measured on MLPs chose the loop for 21 transformers families where
# batch and vmap were 3-8x faster on the CPU).
MEASURE_CHUNK = 8
# A vectorized strategy predicted within this factor of the fastest is timed on a whole
# chunk: a prediction from 8 samples misses the cache effects of T copies.
RETIME_WITHIN = 1.5

#: The last choice of ``mc_predict(strategy="auto")``, or of an explicit strategy: what
#: ran and why, in one line (also logged at DEBUG level on the ``dropkit`` logger).
last_choice: Choice | None = None


def _on_gpu(model: nn.Module, x: Any) -> bool:
    """Whether the work runs on an accelerator (:func:`model_device` off the CPU)."""
    return model_device(model, x).type not in ("cpu", "meta")


@contextmanager
def mc_mode(model: nn.Module, example_input: Any = None) -> Iterator[nn.Module]:
    """Inside, every dropout site of ``model`` samples and every other module (BatchNorm
    above all) is in eval. On exit, also after an exception, every module's
    ``training`` flag is exactly what it was.

    A site's gate is switched on alone, not its children: an attention module that
    passes ``dropout_p=p if self.training else 0.`` samples while the BatchNorm or
    LayerNorm beside it stays in eval. Only a discovery pass over an input shows whose
    flag gates a fused call that reads a child's rate (timm's and GPT-2's attention,
    BERT's; see :mod:`dropkit.sites`): it runs on ``example_input`` if given, otherwise
    on the arguments of the model's first call inside (one extra forward pass, which
    leaves modes, buffers and random streams as they were).

    Example::

        with dropkit.mc_mode(model), torch.no_grad():
            samples = torch.stack([model(x) for _ in range(50)])
    """
    sites = dropout_sites(model, example_input)
    with only_training(model, gates_of(sites)):
        def switch_on(found: list[Site]) -> None:
            for gate in gates_of(found):
                gate.training = True

        pending = on_first_call(model, switch_on) if example_input is None else None
        try:
            yield model
        finally:
            if pending is not None:
                pending.remove()


def _sdpa_math(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
               dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
               enable_gqa: bool = False) -> Tensor:
    """``scaled_dot_product_attention`` as its documented math, with dropkit's dropout:
    vmap cannot draw fused attention dropout per sample on an unbatched input."""
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    if enable_gqa:
        k = k.repeat_interleave(q.size(-3) // k.size(-3), -3)
        v = v.repeat_interleave(q.size(-3) // v.size(-3), -3)
    scores = q @ k.transpose(-2, -1) * scale  # (..., L, S)
    if is_causal:
        keep = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        scores = (scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                  else scores + attn_mask)
    attn = torch.softmax(scores, dim=-1)
    # A row with every position masked (a left-padded row under a causal mask) attends
    # to nothing: torch's SDPA gives it zeros (its "safe softmax"), a plain softmax NaN,
    # which the next layer would spread to the real tokens.
    attn = attn.masked_fill(scores.isneginf().all(-1, keepdim=True), 0.0)
    return F.dropout(attn, dropout_p, True) @ v


def _dropout2d(x: Tensor, p: float, training: bool) -> Tensor:
    # torch reads a 3D input to dropout2d as (N, C, L): keep its meaning
    return (F.dropout(x, p, training, broadcast_dims=(2,)) if x.dim() == 3
            else F.dropout2d(x, p, training))


_VMAP_SAFE: dict[Any, Callable[[Tensor, float, bool], Tensor]] = {
    TF.dropout: F.dropout,
    TF.dropout1d: F.dropout1d,
    TF.dropout2d: _dropout2d,
    TF.dropout3d: F.dropout3d,
    TF.alpha_dropout: F.alpha_dropout,
    TF.feature_alpha_dropout: F.feature_alpha_dropout,
}


class _VmapSafeDropout(TorchFunctionMode):
    """Reroutes torch's dropout calls (modules' and functional ones) to dropkit's
    vmap-safe draws: torch draws in place into a fresh tensor, which vmap refuses when
    the input is unbatched (the network before the first dropout ran once)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: Mapping[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _VMAP_SAFE:
            p, training = DROPOUT_CALLS[func](args, kwargs)
            return _VMAP_SAFE[func](args[0] if args else kwargs["input"], p, training)
        if func is TF.scaled_dot_product_attention:
            p, _ = DROPOUT_CALLS[func](args, kwargs)
            if p > 0.0:
                return _sdpa_math(*args, **kwargs)
        return func(*args, **kwargs)


def _failing_module(model: nn.Module, error: BaseException) -> str:
    """Name the innermost module of ``model`` whose code was running when ``error`` rose.

    Read from the traceback, so the successful path pays nothing for it.
    """
    names = {id(m): n for n, m in model.named_modules()}
    where = "the model"
    for frame, _ in traceback.walk_tb(error.__traceback__):
        owner = frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names:
            name = names[id(owner)]
            kind = type(owner).__name__
            where = f"module {name!r} ({kind})" if name else f"the model's own forward ({kind})"
    return where


def _describe(out: Any) -> str:
    def one(v: Any) -> str:
        return f"Tensor{tuple(v.shape)}" if isinstance(v, Tensor) else type(v).__name__

    if isinstance(out, Mapping):
        return f"a {type(out).__name__} with keys {[str(k) for k in out]}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {[one(v) for v in out]}"
    return f"a {type(out).__name__}"


Output = str | Callable[[Any], Tensor] | None


class _OutputError(ValueError):
    """``output`` does not pick a tensor: the caller's mistake, never a reason to try
    the next strategy."""


def _select(out: Any, output: Output) -> Tensor:
    """The tensor ``output`` names in a model's output (see :func:`mc_predict`)."""
    if output is None:
        if isinstance(out, Tensor):
            return out
        if isinstance(out, Mapping) and isinstance(out.get("logits"), Tensor):
            return out["logits"]
        raise _OutputError(
            f"mc_predict: the model returned {_describe(out)}, not a tensor nor an output "
            "with `logits`; pass output= a key or attribute name, or a callable that picks "
            "the tensor to sample"
        )
    picked: Any
    if callable(output):
        try:
            picked = output(out)
        except Exception as error:  # the caller's callable, not the strategy, failed
            raise _OutputError(f"mc_predict: the output= callable raised on "
                               f"{_describe(out)}: {_reason(error)}") from error
    elif isinstance(out, Mapping) and output in out:
        picked = out[output]
    else:
        picked = getattr(out, output, None)
    if not isinstance(picked, Tensor):
        raise _OutputError(
            f"mc_predict: output={output!r} picks {type(picked).__name__} from "
            f"{_describe(out)}; expected it to pick a tensor"
        )
    return picked


def _chunks(samples: int, chunk_size: int | None) -> list[int]:
    size = chunk_size or samples
    return [min(size, samples - start) for start in range(0, samples, size)]


Run = Callable[[nn.Module, Any, int, "int | None", Output], Tensor]


def _forward(model: nn.Module, x: Any, output: Output) -> Tensor:
    return _select(call_model(model, x), output)  # x was checked by mc_predict


def reroutes(sites: list[Site]) -> bool:
    """Whether a vmapped pass needs :class:`_VmapSafeDropout`: unless every site is a
    dropkit module, whose draws vmap batches as they are. The mode costs a Python call
    for every torch function of the pass (on a small model, a fifth of ``mc_predict``'s
    host time). A torch dropout call that no discovery pass saw (a data-dependent
    branch) then runs as torch runs it under vmap: element and channel dropout draw per
    sample, and attention dropout on an unbatched input raises (tested), never silent."""
    return not all(s.kind == "module" and isinstance(s.module, RateMixin) for s in sites)


def _by_vmap(model: nn.Module, x: Any, samples: int, chunk: int | None,
             output: Output, reroute: bool = True) -> Tensor:
    # x enters unbatched: everything before the first dropout runs once, and the first
    # out-of-place draw gives every later tensor a sample dimension.
    with _VmapSafeDropout() if reroute else nullcontext():
        parts = [
            torch.func.vmap(lambda _: _forward(model, x, output), randomness="different")(
                torch.arange(k))
            for k in _chunks(samples, chunk)
        ]
    return _joined(parts)


def _joined(parts: list[Tensor]) -> Tensor:
    """The chunks' samples as one tensor: no copy where there is one chunk."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def batchable(sites: list[Site]) -> bool:
    """Whether replicating the batch along dim 0 gives every site's draws independently
    (:func:`check_batchable` names the site where not)."""
    return all(_batch_problem(s) is None for s in sites)


def _batch_problem(site: Site) -> str | None:
    """Why replicating the input along dim 0 would not give independent samples here."""
    if site.shares_noise_across_batch:
        return "one draw serves its whole batch, so the replicated inputs would share it"
    if site.time_first:
        return "it takes (T, N, ...) sequences, so dim 0 is time, not the batch"
    return None


def check_batchable(fn: str, action: str, sites: list[Site]) -> None:
    """Raise, naming the first site, where replicating the batch cannot ``action``."""
    for s in sites:
        problem = _batch_problem(s)
        if problem:
            raise ValueError(f"{fn}: strategy 'batch' cannot {action} {s.describe()}: "
                             f"{problem}; use 'vmap' or 'loop'")


def _tile(x: Any, k: int) -> tuple[Any, int]:
    """``x`` with every batch tensor repeated ``k`` times along dim 0, and the batch size."""
    args, kwargs = split_inputs("mc_predict", x)
    batched = [t for t in [*args, *kwargs.values()] if isinstance(t, Tensor) and t.dim() > 0]
    if not batched:
        raise ValueError("mc_predict: strategy 'batch' needs an input with a batch dim 0")
    n = batched[0].shape[0]

    def tile(v: Any) -> Any:
        if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n:
            return v.unsqueeze(0).expand(k, *v.shape).reshape(k * n, *v.shape[1:])  # (k N, ...)
        return v

    if isinstance(x, Mapping):
        return {key: tile(v) for key, v in kwargs.items()}, n
    tiled = tuple(tile(v) for v in args)
    return (tiled if isinstance(x, tuple) else tiled[0]), n


def _by_batch(model: nn.Module, x: Any, samples: int, chunk: int | None,
              output: Output) -> Tensor:
    parts = []
    for k in _chunks(samples, chunk):
        tiled, n = _tile(x, k)
        out = _forward(model, tiled, output)
        if out.dim() == 0 or out.shape[0] != k * n:
            raise ValueError(
                f"mc_predict: strategy 'batch' expects the output's dim 0 to be the batch "
                f"({k * n}), got output shape {tuple(out.shape)}"
            )
        parts.append(out.reshape(k, n, *out.shape[1:]))  # (k, N, ...)
    return _joined(parts)


def _by_loop(model: nn.Module, x: Any, samples: int, chunk: int | None,
             output: Output) -> Tensor:
    return torch.stack([_forward(model, x, output) for _ in range(samples)])


_RUN: dict[str, Run] = {"vmap": _by_vmap, "batch": _by_batch, "loop": _by_loop}


def sampler(strategy: str, sites: list[Site]) -> Run:
    """The run function of ``strategy`` ("vmap", "batch" or "loop") for a model with
    these sites: Monte Carlo prediction and R-Drop draw their passes with it."""
    if strategy == "vmap":
        return functools.partial(_by_vmap, reroute=reroutes(sites))
    return _RUN[strategy]


def out_of_memory(error: BaseException) -> bool:
    """A device's out-of-memory error, or the CPU allocator's (a plain RuntimeError)."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error))


def _in_memory(run: Run, name: str, model: nn.Module, x: Any, samples: int,
               chunk: int | None, output: Output) -> Tensor:
    """``run``, halving the number of samples drawn at once while the device runs out of
    memory (vectorized samples hold T copies of every activation after the first draw),
    with a warning that names the chunk that fitted."""
    size = chunk or samples
    while True:
        try:
            out = run(model, x, samples, size, output)
            break
        except Exception as error:
            if not out_of_memory(error) or size == 1 or name == "loop":
                raise
        # retried outside the handler: the traceback's frames hold the failed chunk's
        # tensors until it ends
        size = (size + 1) // 2
    if size != (chunk or samples):
        warnings.warn(
            f"mc_predict: strategy {name!r} ran out of memory drawing {chunk or samples} "
            f"samples at once; it drew them {size} at a time (pass chunk_size={size} to "
            "skip the failed tries)", RuntimeWarning, stacklevel=3)
    return out


def _why_not(site: Site) -> str:
    label = f"{site.name!r} ({type(site.module).__name__}, rate {site.rate:g})"
    if site.sampled:
        return f"{label} sampled in the discovery pass, but its noise never reached the output"
    if site.sampled is None:
        return f"{label}: not observed (the discovery pass holds LayerDrop at 0)"
    if site.kind == "module":
        return f"{label}: its forward never ran in training mode in the discovery pass"
    gate = f"{site.owner!r}" if site.owner else "the model's own forward"
    return (f"{label}: no dropout call from the code of {gate} drew, even with that "
            "module's flag on (its dropout is gated on something dropkit cannot switch)")


def _check_differ(out: Tensor, active: list[Site]) -> None:
    """Never silent: identical samples would read as zero uncertainty (an empty batch
    has nothing to compare)."""
    if out.shape[0] < 2 or out[0].numel() == 0 or any(
            not torch.equal(out[0], out[t]) for t in range(1, out.shape[0])):
        return
    raise RuntimeError(
        f"mc_predict: all {out.shape[0]} samples are identical although the model has "
        f"dropout sites with rates above 0; dropkit could not make them sample: "
        + "; ".join(_why_not(s) for s in active)
        + ". Nothing is returned: identical samples would read as zero uncertainty."
    )


def mc_predict(
    model: nn.Module,
    x: Any,
    samples: int = 50,
    *,
    strategy: str = "auto",
    chunk_size: int | None = None,
    output: Output = None,
    consistent: bool | int = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw ``samples`` stochastic forward passes of ``model`` on ``x``.

    Runs under ``torch.no_grad()`` and :func:`mc_mode`: only dropout samples; the
    model's modes, parameters and buffers (BatchNorm's running statistics,
    ``num_batches_tracked``) are left untouched. A discovery pass over ``x`` finds
    every dropout site first (:func:`dropkit.dropout_sites`), functional and attention
    dropout included, so transformers and timm models sample as dropkit's own do.

    Args:
        model: a model with at least one dropout site with a rate above 0.
        x: its input: a tensor, a tuple of positional arguments, or a mapping of
            keyword arguments (an HF ``BatchEncoding`` works as is). Batch along dim 0
            (for ``"batch"``).
        samples: number of samples T. Default: 50.
        strategy: ``"vmap"`` (``torch.func.vmap(randomness="different")`` over samples:
            the network before the first dropout runs once), ``"batch"`` (replicate the
            input along the batch dim: one pass), ``"loop"`` (T passes), or ``"auto"``
            (the fastest of those that apply, by measurement: on the first call for a
            model, input signature and chunk size each is timed on a few samples, which
            are kept, and the one predicted fastest for the whole call runs from then on;
            a strategy that fails is skipped with a warning naming the module;
            :data:`dropkit.mc.last_choice` says what ran and why; an input that is not
            a plain structure of tensors and values has no signature and is not timed:
            vmap, else the loop). ``"batch"`` only
            where tiling the input is observed not to mix samples (the output's dim 0
            doubles and nothing else grows, a copy's rows unchanged by the other's).
            An explicit strategy is never switched; one that cannot run is an error
            naming the module. Default: ``"auto"``.
        chunk_size: draw at most this many samples at once, to bound memory. Where the
            device runs out of memory, ``"vmap"`` and ``"batch"`` halve it (from
            ``samples`` when None) until the draw fits, and warn with the size that did.
        output: which tensor of a structured output to sample: a key or attribute name
            (``"logits"``) or a callable ``output -> Tensor``. Default None: a tensor
            output as is, the ``logits`` of a ``ModelOutput`` or mapping.
        consistent: make sample t one network for every input (one mask per site for
            the whole batch, :mod:`dropkit.consistent`), as BatchBALD needs. An int is
            the seed: the same seed gives the same T networks in every call, so a pool
            scored in batches sees one set of networks; True draws a seed from torch's
            global generator. Runs T passes; refuses, by name, a site that cannot share
            its draw. Default: False.
        generator: the source of the call's draws: torch's default generators (which
            the model's own code draws from) are forked and seeded from it for the call
            and left as they were, so one generator state gives the same samples with
            the same strategy, and ``consistent=True`` draws its seed from it. Default:
            None, torch's global generator.

    Returns:
        ``(samples, *selected_output.shape)``.

    Raises:
        RuntimeError: when all T >= 2 samples are identical although sites with rates
            above 0 exist; it names the sites dropkit could not make sample.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"mc_predict: expected `model` to be a torch.nn.Module, got "
                        f"{type(model).__name__}")
    check_int("mc_predict", samples, "samples", 1)
    if chunk_size is not None:
        check_int("mc_predict", chunk_size, "chunk_size", 1)
    if strategy not in STRATEGIES:
        raise ValueError(
            f"mc_predict: expected `strategy` to be one of {STRATEGIES}, got {strategy!r}"
        )
    if output is not None and not (isinstance(output, str) or callable(output)):
        raise TypeError(f"mc_predict: expected `output` to be None, a str or a callable, "
                        f"got {type(output).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"mc_predict: expected `generator` to be a torch.Generator or None, "
                        f"got {type(generator).__name__}")
    if isinstance(consistent, bool):
        seed = seed_from("mc_predict", generator) if consistent else None
    else:
        seed = check_int("mc_predict", consistent, "consistent", 0, 2**31)
    if seed is not None and strategy not in ("auto", "loop"):
        raise ValueError(f"mc_predict: consistent sampling runs one network per pass "
                         f"(strategy 'loop'), got strategy={strategy!r}")
    split_inputs("mc_predict", x)  # a bad input fails here, before any pass
    key = signature(model, x)  # taken once: it reads every module's attributes
    sites = discover_cached(model, x, key)
    active = [s for s in sites if s.draws]
    if not active:
        raise ValueError(
            "mc_predict: the model has no dropout to sample (none present, or every rate "
            "is 0): Monte Carlo samples would all be equal"
        )
    with drawing_from("mc_predict", generator, model_device(model, x)):
        if seed is not None:
            out = _consistent(model, x, samples, output, active, seed, key)
        elif strategy == "auto":
            out = _auto(model, x, samples, chunk_size, output, sites, active, key)
        else:
            out = _asked(strategy, model, x, samples, chunk_size, output, sites, active, key)
    _check_differ(out, active)
    return out


def _consistent(model: nn.Module, x: Any, samples: int, output: Output, active: list[Site],
                seed: int, key: object) -> Tensor:
    from dropkit.consistent import check_sites, consistent_passes

    check_sites(active)
    device = model_device(model, x)
    with torch.no_grad(), only_training(model, gates_of(active)), _VmapSafeDropout():
        _check_consistent(model, x, output, key, device)
        return consistent_passes(lambda: _forward(model, x, output), samples, seed, device)


# Per model: the signature whose consistent sampling was observed to share its draws.
_SHARING_SEEN: weakref.WeakKeyDictionary[nn.Module, object] = weakref.WeakKeyDictionary()


def _check_consistent(model: nn.Module, x: Any, output: Output, key: object,
                      device: torch.device) -> None:
    """Never silent: consistent sampling is observed to share its draws, once per model
    and input signature: one network's pass over the batch tiled twice must give each
    copy the untiled pass's output. Not observable where tiling mixes rows even
    without dropout (:func:`_coupling`); the sites' check then stands alone."""
    from dropkit.consistent import consistent_passes

    if key is not None and _SHARING_SEEN.get(model) == key:
        return
    if _coupling(model, x, output, key) is None:
        def network_0(inputs: Any) -> Tensor:
            return consistent_passes(lambda: _forward(model, inputs, output), 1, 0, device)[0]

        if _halves_differ(network_0(x), network_0(_tile(x, 2)[0])):
            raise ValueError(
                "mc_predict: consistent sampling was observed to draw per input: one "
                "network's pass over the batch tiled twice gave the copies other outputs "
                "than the batch alone; a dropout site draws outside dropkit's mask "
                "primitive (a subclass that draws otherwise?); use consistent=False")
    if key is not None:
        _SHARING_SEEN[model] = key


def _choose(choice: Choice) -> None:
    global last_choice
    last_choice = choice
    _LOG.debug("mc_predict: %s", choice)


def _asked(strategy: str, model: nn.Module, x: Any, samples: int, chunk: int | None,
           output: Output, sites: list[Site], active: list[Site], key: object) -> Tensor:
    """An explicit strategy: refused by name where it cannot give independent samples,
    and an error that names the module where torch cannot run it."""
    if strategy == "batch":
        check_batchable("mc_predict", "sample", active)
        check_uncoupled("mc_predict", model, x, output, key)
    _choose(Choice(strategy, "asked for", {}))
    with torch.no_grad(), only_training(model, gates_of(sites)), \
            vmap_failures_named("mc_predict", "sample", model, strategy):
        return _in_memory(sampler(strategy, sites), strategy, model, x, samples, chunk, output)


@contextmanager
def vmap_failures_named(fn: str, action: str, model: nn.Module,
                        strategy: str) -> Iterator[None]:
    """Inside, an explicit 'vmap' that torch cannot run raises an error naming the module
    (the caller's own errors, ValueError and TypeError, and running out of memory pass
    as they are)."""
    try:
        yield
    except (ValueError, TypeError):
        raise
    except Exception as error:
        if strategy != "vmap" or out_of_memory(error):
            raise
        raise RuntimeError(f"{fn}: strategy 'vmap' cannot {action} "
                           f"{_failing_module(model, error)}: {_reason(error)}; use 'batch' "
                           "or 'loop'") from error


def _reason(error: BaseException) -> str:
    """An exception's type and first line."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


# The choice of "auto", per model: (signature and chunk size, strategy, reason).
_CHOSEN: weakref.WeakKeyDictionary[nn.Module, tuple[object, Choice]] = (
    weakref.WeakKeyDictionary())


def _candidates(model: nn.Module, x: Any, output: Output, active: list[Site],
                key: object) -> list[str]:
    """The strategies that can give independent samples here, vmap first. Batch only
    where its observation can be reused: with no signature it would cost three passes
    at every call."""
    order = ["vmap", "batch", "loop"]
    if (key is None or any(_batch_problem(s) for s in active)
            or _coupling(model, x, output, key) is not None):
        order.remove("batch")
    return order


def _auto(model: nn.Module, x: Any, samples: int, chunk: int | None, output: Output,
          sites: list[Site], active: list[Site], signed: object) -> Tensor:
    """The fastest strategy, timed on the first call for this model, input signature and
    chunk size (:func:`_measure`); later calls run it, falling back where it fails."""
    key = None if signed is None else (
        signed, chunk or samples, output if isinstance(output, (str, type(None))) else id(output))
    held = _CHOSEN.get(model)
    order = _candidates(model, x, output, active, signed)
    with torch.no_grad(), only_training(model, gates_of(sites)):
        if key is None:  # an input with no signature: timing could not be reused
            choice = Choice(order[0], "not timed: the input is not a plain structure of "
                            "tensors, so a timing could not be reused", {})
        elif held is None or held[0] != key:
            if samples >= 2 and len(order) > 1:
                # timed on samples thrown away, every random stream then put back: a
                # seeded call gives the same samples whether or not it was the first
                with untouched(model):
                    choice = _measure(model, x, samples, chunk, output, sites, order)
            else:
                choice = Choice(order[0], "one sample, or one strategy that applies: "
                                "nothing to time", {})
            _CHOSEN[model] = (key, choice)
        else:
            choice = held[1]
        _choose(choice)
        order = [choice.strategy] + [n for n in order if n != choice.strategy]
        return _with_fallback(order, model, x, samples, chunk, output, sites)


def _timed(run: Run, model: nn.Module, x: Any, k: int, output: Output,
           sync: Callable[[], None]) -> tuple[Tensor, float]:
    sync()
    start = time.perf_counter()
    out = run(model, x, k, None, output)
    sync()
    return out, time.perf_counter() - start


def _measure(model: nn.Module, x: Any, samples: int, chunk: int | None, output: Output,
             sites: list[Site], order: list[str]) -> Choice:
    """Time each strategy of ``order`` on a warm-up sample, one sample and a chunk of
    ``MEASURE_CHUNK``, and fit ``time = setup + per_sample * k`` to the two timed runs.
    The loop's cost is linear in the samples, a vectorized one's may not be (T copies of
    every activation leave the cache): each vectorized strategy predicted within
    ``RETIME_WITHIN`` of the fastest is timed on a whole chunk of the call, and that time
    replaces its prediction. The strategy least in the end is chosen."""
    per_call = min(chunk or samples, samples)
    k = max(2, min(MEASURE_CHUNK, per_call))
    calls = math.ceil(samples / per_call)
    sync = _synchronizer(model, x)
    predicted: dict[str, float] = {}
    failed: list[str] = []
    for name in order:
        run = sampler(name, sites)
        try:
            run(model, x, 1, None, output)  # warm-up
            _, t1 = _timed(run, model, x, 1, output, sync)
            _, tk = _timed(run, model, x, k, output, sync)
        except _OutputError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure means: time the next one
            if out_of_memory(error):
                raise
            # not a warning: auto's job is to find what runs (last_choice says why)
            failed.append(f"{name} failed in {_failing_module(model, error)} "
                          f"({_reason(error)})")
            continue
        per_sample = max(tk - t1, 0.0) / (k - 1)
        predicted[name] = calls * (max(t1 - per_sample, 0.0) + per_sample * per_call)
    if not predicted:
        raise RuntimeError(f"mc_predict: no strategy could sample this model: {failed}")
    whole: set[str] = set()  # timed on a whole chunk
    while per_call > k:
        least = min(predicted.values())
        close = [n for n in predicted if n != "loop" and n not in whole
                 and predicted[n] <= RETIME_WITHIN * least]
        if not close:
            break
        for name in close:
            predicted[name] = calls * _whole_chunk(sampler(name, sites), model, x, per_call,
                                                   output, sync)
            whole.add(name)
    best = min(predicted, key=lambda n: predicted[n])
    timings = ", ".join(f"{n} {1e3 * t:.3g} ms{' (timed whole)' if n in whole else ''}"
                        for n, t in predicted.items())
    reason = (f"fastest when timed on this model and input ({timings} predicted for "
              f"{samples} samples in chunks of {per_call})"
              + (f"; {'; '.join(failed)}" if failed else ""))
    return Choice(best, reason, predicted)


def _whole_chunk(run: Run, model: nn.Module, x: Any, per_call: int, output: Output,
                 sync: Callable[[], None]) -> float:
    """Seconds for one whole chunk: the least of two runs where one is short (a short
    run is the noisiest), inf where it does not fit in memory."""
    try:
        _, t = _timed(run, model, x, per_call, output, sync)
        if t < 0.05:
            t = min(t, _timed(run, model, x, per_call, output, sync)[1])
    except Exception as error:
        if not out_of_memory(error):
            raise
        return math.inf  # a whole chunk does not fit: not the fastest
    return t


def _synchronizer(model: nn.Module, x: Any) -> Callable[[], None]:
    """Waits for the device's queued work, so that a timing measures it."""
    if _on_gpu(model, x) and torch.cuda.is_available():
        return torch.cuda.synchronize
    return lambda: None


def _with_fallback(order: list[str], model: nn.Module, x: Any, samples: int,
                   chunk: int | None, output: Output, sites: list[Site]) -> Tensor:
    """The first strategy of ``order`` that runs, warning for each that failed."""
    for i, name in enumerate(order):
        run = functools.partial(_in_memory, sampler(name, sites), name)
        if i == len(order) - 1:
            return run(model, x, samples, chunk, output)
        try:
            return run(model, x, samples, chunk, output)
        except _OutputError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure means: next strategy
            warnings.warn(
                f"mc_predict: strategy {name!r} failed in {_failing_module(model, error)} "
                f"({_reason(error)}); falling back to {order[i + 1]!r}",
                RuntimeWarning, stacklevel=4)
    raise AssertionError("unreachable")  # pragma: no cover


# Per model: (signature, why tiling the batch mixes samples, or None).
_COUPLED: weakref.WeakKeyDictionary[nn.Module, tuple[object, str | None]] = (
    weakref.WeakKeyDictionary())


def _coupling(model: nn.Module, x: Any, output: Output, key: object) -> str | None:
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
        tiled_x, n = _tile(x, 2)
    except ValueError as error:  # no tensor with a batch dim
        return str(error).removeprefix("mc_predict: ")
    with torch.no_grad(), only_training(model, []):
        plain = _forward(model, x, output)
        tiled = _forward(model, tiled_x, output)
    want = (2 * plain.shape[0], *plain.shape[1:]) if plain.dim() else None
    if want is None or plain.shape[0] != n or tuple(tiled.shape) != want:
        return (f"with the batch of {n} tiled twice the output has shape "
                f"{tuple(tiled.shape)}, where dim 0 alone should double from "
                f"{tuple(plain.shape)}")
    if _halves_differ(plain, tiled):
        return ("with the batch tiled twice, a copy's outputs change: its rows "
                "depend on the other copy's inputs")
    return None


def _halves_differ(plain: Tensor, tiled: Tensor) -> bool:
    """Whether either half of ``tiled`` (the batch tiled twice) differs from ``plain``
    beyond the rounding of a larger matmul (a dropped unit moves an output by far more)."""
    halves = tiled.reshape(2, *plain.shape)  # (2, N, ...)
    scale = plain.abs().max().item() if plain.numel() else 0.0
    return any(not torch.allclose(half, plain, rtol=1e-4, atol=1e-5 * max(scale, 1.0),
                                  equal_nan=True) for half in halves)


def check_uncoupled(fn: str, model: nn.Module, x: Any, output: Output,
                    key: object = ...) -> None:
    """Raise where tiling the batch would mix samples (:func:`_coupling`)."""
    problem = _coupling(model, x, output, signature(model, x) if key is ... else key)
    if problem is not None:
        raise ValueError(f"{fn}: strategy 'batch' expects the output's dim 0 to be the batch "
                         f"and each row to depend on its own input alone: {problem}; use "
                         "'vmap' or 'loop'")
