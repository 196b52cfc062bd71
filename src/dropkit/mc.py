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
import itertools
import math
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as TF
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

import dropkit.functional as F
from dropkit._checks import check_int
from dropkit._trace import DROPOUT_CALLS, call_model, only_training, split_inputs
from dropkit.nn._base import RateMixin
from dropkit.sites import Site, discover_cached, dropout_sites, gates_of, on_first_call

__all__ = ["mc_mode", "mc_predict", "STRATEGIES"]

STRATEGIES = ("auto", "vmap", "batch", "loop")

# "auto" vectorizes only where at least this share of the forward's floating-point work
# comes before the first draw: vmap runs that prefix once but costs c times the loop per
# sample after it, so it wins when the prefix's share of the time exceeds 1 - 1/c.
# Measured on a 2-core CPU (benchmarks/bench_mc_predict.py): c = 2.1 for a BatchNorm
# trunk (vmap 2.2x faster than the loop), 3.4 for an MLP with dropout in its head (2.8x
# faster), 1.8 for BERT, whose dropout starts at the embeddings (vmap 1.6x slower).
# On a GPU a pass of a model this size is bound by kernel launches, not arithmetic: one
# vectorized pass beats T of them whatever the prefix (an H100, same benchmark with
# --device cuda: vmap 1.4x the loop with dropout after every layer of an MLP, 5.0x for
# BERT), so "auto" vectorizes there always.
VMAP_MIN_PREFIX = 0.5


def _on_gpu(model: nn.Module, x: Any) -> bool:
    """Whether the work runs on an accelerator: the model's first parameter or buffer,
    else the input's first tensor, is off the CPU."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    if first is None:
        args, kwargs = split_inputs("mc_predict", x)
        first = next((t for t in [*args, *kwargs.values()] if isinstance(t, Tensor)), None)
    return first is not None and first.device.type not in ("cpu", "meta")


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
        picked = output(out)
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
        except torch.OutOfMemoryError:
            if size == 1 or name == "loop":
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
    """Never silent: identical samples would read as zero uncertainty."""
    if out.shape[0] < 2 or any(not torch.equal(out[0], out[t]) for t in range(1, out.shape[0])):
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
            (vmap, falling back to batch, then loop, with a warning that names the module
            that failed; on the CPU, the loop alone where less than half of the forward
            comes before the first dropout, so that vmap has little to share; on a GPU,
            where T passes are bound by kernel launches, always vectorized: bound its
            memory with ``chunk_size``). Default: ``"auto"``.
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

    Returns:
        ``(samples, *selected_output.shape)``.

    Raises:
        RuntimeError: when all T >= 2 samples are identical although sites with rates
            above 0 exist; it names the sites dropkit could not make sample.
    """
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
    if isinstance(consistent, bool):
        seed = int(torch.randint(0, 2**31, ())) if consistent else None
    else:
        seed = check_int("mc_predict", consistent, "consistent", 0, 2**31)
    if seed is not None and strategy not in ("auto", "loop"):
        raise ValueError(f"mc_predict: consistent sampling runs one network per pass "
                         f"(strategy 'loop'), got strategy={strategy!r}")
    split_inputs("mc_predict", x)  # a bad input fails here, before any pass
    sites, prefix = discover_cached(model, x)
    active = [s for s in sites if s.rate > 0]
    if not active:
        raise ValueError(
            "mc_predict: the model has no dropout to sample (none present, or every rate "
            "is 0): Monte Carlo samples would all be equal"
        )
    if seed is not None:
        from dropkit.consistent import check_sites, consistent_passes

        hooked, own = check_sites(active)
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
        with torch.no_grad(), only_training(model, own):
            out = consistent_passes(lambda: _forward(model, x, output), hooked, own, samples,
                                    seed, device)
        _check_differ(out, active)
        return out
    if strategy == "batch":
        check_batchable("mc_predict", "sample", active)
    order = [strategy]
    if strategy == "auto":
        vectorize = prefix >= VMAP_MIN_PREFIX or _on_gpu(model, x)
        order = ["vmap", "batch", "loop"] if vectorize else ["loop"]
        if any(_batch_problem(s) for s in active) and "batch" in order:
            order.remove("batch")
    with torch.no_grad(), only_training(model, gates_of(sites)):
        for i, name in enumerate(order):
            run = functools.partial(_in_memory, sampler(name, sites), name)
            if i == len(order) - 1:
                out = run(model, x, samples, chunk_size, output)
                break
            try:
                out = run(model, x, samples, chunk_size, output)
                break
            except _OutputError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure means: next strategy
                reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
                warnings.warn(
                    f"mc_predict: strategy {name!r} failed in {_failing_module(model, error)} "
                    f"({type(error).__name__}: {reason}); falling back to {order[i + 1]!r}",
                    RuntimeWarning,
                    stacklevel=2,
                )
    _check_differ(out, active)
    return out
