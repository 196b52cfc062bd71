"""Monte Carlo dropout done right: BatchNorm never disturbed, samples vectorized.

``model.train()`` for MC sampling (the common ``mc_dropout_predict`` recipe) also
switches BatchNorm to batch statistics and updates its running averages: wrong
predictions and a corrupted model. Here only the flags that gate a dropout site
(:mod:`dropkit.tools.sites`) are switched on, each alone, and the samples are drawn with
``torch.func.vmap`` so that the network before the first dropout runs once, not T
times. Models that keep dropout in functional calls and attention (transformers,
timm) are found by a discovery pass over the input, and ``mc_predict`` refuses to
return samples that are all identical: that would read as zero uncertainty.

Papers: Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation"; Srivastava et
al. 2014, section 7.5 (Monte Carlo model averaging). Learned from: baal's
``MCDropoutModule``, torch-uncertainty's ``mc_dropout``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from dropkit._checks import check_int
from dropkit._rng import drawing_from, seed_from
from dropkit._trace import model_device, only_training, split_inputs
from dropkit.errors import UsageError, UsageTypeError
from dropkit.inference.sampling import auto, reroute
from dropkit.inference.sampling.auto import Choice, choose, run_fastest
from dropkit.inference.sampling.batch import (
    check_batchable,
    check_uncoupled,
    coupling,
    halves_differ,
    tile,
)
from dropkit.inference.sampling.failures import vmap_failures_named
from dropkit.inference.sampling.output import Output, forward
from dropkit.inference.sampling.strategies import in_memory, sampler
from dropkit.nn.layer_drop import LayerDrop
from dropkit.tools.sites import (
    Site,
    discover_cached,
    dropout_sites,
    gates_of,
    on_first_call,
    signature,
)

__all__ = ["mc_mode", "mc_predict", "STRATEGIES", "Choice"]


STRATEGIES = ("auto", "vmap", "batch", "loop")


def __getattr__(name: str) -> Any:
    if name == "last_choice":  # the last choice of mc_predict, kept where auto sets it
        return auto.last_choice
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextmanager
def mc_mode(model: nn.Module, example_input: Any = None) -> Iterator[nn.Module]:
    """Inside, every dropout site of ``model`` samples and every other module (BatchNorm
    above all) is in eval. On exit, also after an exception, every module's
    ``training`` flag is exactly what it was.

    A site's gate is switched on alone, not its children: an attention module that
    passes ``dropout_p=p if self.training else 0.`` samples while the BatchNorm or
    LayerNorm beside it stays in eval. Only a discovery pass over an input shows whose
    flag gates a fused call that reads a child's rate (timm's and GPT-2's attention,
    BERT's; see :mod:`dropkit.tools.sites`): it runs on ``example_input`` if given, otherwise
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


def check_request(fn: str, model: object, samples: object, output: object) -> None:
    """What every sampler of a model checks first: a module, ``samples`` an int >= 1, and
    ``output`` None, a key or attribute name, or a callable."""
    if not isinstance(model, nn.Module):
        raise UsageTypeError(f"{fn}: expected `model` to be a torch.nn.Module, got "
                             f"{type(model).__name__}")
    check_int(fn, samples, "samples", 1)
    if output is not None and not (isinstance(output, str) or callable(output)):
        raise UsageTypeError(f"{fn}: expected `output` to be None, a str or a callable, "
                             f"got {type(output).__name__}")


def check_one_path(fn: str, active: list[Site], verb: str, holder: str) -> None:
    """Refuse, by name, a site whose sampling no single recorded path can hold: LayerDrop
    decides in Python which blocks run, and ``holder`` (an exported graph, a CUDA graph)
    runs one path."""
    for s in active:
        if isinstance(s.module, LayerDrop):
            raise UsageError(
                f"{fn}: cannot {verb} {s.describe()}: it skips whole blocks by a coin flip "
                f"at run time, and {holder} has one fixed path; set its rate to 0 "
                "(dropkit.set_rate) or prune it (LayerDrop.prune) first")


def check_differ(out: Tensor, active: list[Site], fn: str = "mc_predict") -> None:
    """Never silent: identical samples would read as zero uncertainty (an empty batch
    has nothing to compare); raises naming the sites that did not sample."""
    if out.shape[0] < 2 or out[0].numel() == 0 or any(
            not torch.equal(out[0], out[t]) for t in range(1, out.shape[0])):
        return
    raise RuntimeError(
        f"{fn}: all {out.shape[0]} samples are identical although the model has "
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
            :data:`dropkit.inference.mc.last_choice` says what ran and why; an input that is not
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
            the whole batch, :mod:`dropkit.inference.consistent`), as BatchBALD needs. An int is
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
    check_request("mc_predict", model, samples, output)
    if chunk_size is not None:
        check_int("mc_predict", chunk_size, "chunk_size", 1)
    if strategy not in STRATEGIES:
        raise UsageError(
            f"mc_predict: expected `strategy` to be one of {STRATEGIES}, got {strategy!r}"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise UsageTypeError(f"mc_predict: expected `generator` to be a torch.Generator or None, "
                        f"got {type(generator).__name__}")
    if isinstance(consistent, bool):
        seed = seed_from("mc_predict", generator) if consistent else None
    else:
        seed = check_int("mc_predict", consistent, "consistent", 0, 2**31)
    if seed is not None and strategy not in ("auto", "loop"):
        raise UsageError(f"mc_predict: consistent sampling runs one network per pass "
                         f"(strategy 'loop'), got strategy={strategy!r}")
    split_inputs("mc_predict", x)  # a bad input fails here, before any pass
    key = signature(model, x)  # taken once: it reads every module's attributes
    sites = discover_cached(model, x, key)
    active = [s for s in sites if s.draws]
    if not active:
        raise UsageError(
            "mc_predict: the model has no dropout to sample (none present, or every rate "
            "is 0): Monte Carlo samples would all be equal"
        )
    with drawing_from("mc_predict", generator, model_device(model, x)):
        if seed is not None:
            out = _consistent(model, x, samples, output, active, seed, key)
        elif strategy == "auto":
            out = run_fastest(model, x, samples, chunk_size, output, sites, active, key)
        else:
            out = _asked(strategy, model, x, samples, chunk_size, output, sites, active, key)
    check_differ(out, active)
    return out


def _consistent(model: nn.Module, x: Any, samples: int, output: Output, active: list[Site],
                seed: int, key: object) -> Tensor:
    from dropkit.inference.consistent import check_sites, consistent_passes

    check_sites(active)
    device = model_device(model, x)
    with torch.no_grad(), only_training(model, gates_of(active)), reroute.VmapSafeDropout():
        _check_consistent(model, x, output, key, device)
        return consistent_passes(lambda: forward(model, x, output), samples, seed, device)


# Per model: the signature whose consistent sampling was observed to share its draws.
_SHARING_SEEN: weakref.WeakKeyDictionary[nn.Module, object] = weakref.WeakKeyDictionary()


def _check_consistent(model: nn.Module, x: Any, output: Output, key: object,
                      device: torch.device) -> None:
    """Never silent: consistent sampling is observed to share its draws, once per model
    and input signature: one network's pass over the batch tiled twice must give each
    copy the untiled pass's output. Not observable where tiling mixes rows even
    without dropout (:func:`coupling`); the sites' check then stands alone."""
    from dropkit.inference.consistent import consistent_passes

    if key is not None and _SHARING_SEEN.get(model) == key:
        return
    if coupling(model, x, output, key) is None:
        def network_0(inputs: Any) -> Tensor:
            return consistent_passes(lambda: forward(model, inputs, output), 1, 0, device)[0]

        if halves_differ(network_0(x), network_0(tile(x, 2)[0])):
            raise UsageError(
                "mc_predict: consistent sampling was observed to draw per input: one "
                "network's pass over the batch tiled twice gave the copies other outputs "
                "than the batch alone; a dropout site draws outside dropkit's mask "
                "primitive (a subclass that draws otherwise?); use consistent=False")
    if key is not None:
        _SHARING_SEEN[model] = key


def _asked(strategy: str, model: nn.Module, x: Any, samples: int, chunk: int | None,
           output: Output, sites: list[Site], active: list[Site], key: object) -> Tensor:
    """An explicit strategy: refused by name where it cannot give independent samples,
    and an error that names the module where torch cannot run it."""
    if strategy == "batch":
        check_batchable("mc_predict", "sample", active)
        check_uncoupled("mc_predict", model, x, output, key)
    choose(Choice(strategy, "asked for", {}))
    with torch.no_grad(), only_training(model, gates_of(sites)), \
            vmap_failures_named("mc_predict", "sample", model, strategy):
        return in_memory(sampler(strategy, sites), strategy, model, x, samples, chunk, output)
