"""``strategy="auto"``: the strategies that apply, timed on the first call for a model,
input signature and chunk size; the fastest kept, and a fallback where it fails later."""

from __future__ import annotations

import functools
import logging
import math
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dropkit._trace import model_device, only_training, untouched
from dropkit.inference.sampling.batch import batch_problem, coupling
from dropkit.inference.sampling.failures import failing_module, out_of_memory, reason
from dropkit.inference.sampling.output import Output, OutputError
from dropkit.inference.sampling.strategies import Run, in_memory, sampler
from dropkit.tools.sites import Site, gates_of

__all__ = ["Choice", "run_fastest", "choose", "last_choice", "MEASURE_CHUNK", "RETIME_WITHIN"]

_LOG = logging.getLogger("dropkit")


@dataclass(frozen=True)
class Choice:
    """The strategy a Monte Carlo call ran, and why (:data:`last_choice`)."""

    strategy: str
    reason: str
    seconds: dict[str, float]  # the predicted time of each strategy timed; {} if none

    def __str__(self) -> str:
        return f"{self.strategy}: {self.reason}"


# "auto" times each strategy on the first call for a model and input signature and keeps
# the fastest (:func:`measure`): a rule drawn from one kind of model misjudged others
# (a FLOP-share rule measured on MLPs chose the loop for 21 transformers families where
# batch and vmap were 3-8x faster on the CPU).
MEASURE_CHUNK = 8


# A vectorized strategy predicted within this factor of the fastest is timed on a whole
# chunk: a prediction from 8 samples misses the cache effects of T copies.
RETIME_WITHIN = 1.5


#: The last choice of ``mc_predict(strategy="auto")``, or of an explicit strategy: what
#: ran and why, in one line (also logged at DEBUG level on the ``dropkit`` logger).
last_choice: Choice | None = None


def choose(choice: Choice) -> None:
    global last_choice
    last_choice = choice
    _LOG.debug("mc_predict: %s", choice)


# The choice of "auto", per model: (signature and chunk size, strategy, reason).
CHOSEN: weakref.WeakKeyDictionary[nn.Module, tuple[object, Choice]] = (
    weakref.WeakKeyDictionary())


def _candidates(model: nn.Module, x: Any, output: Output, active: list[Site],
                key: object) -> list[str]:
    """The strategies that can give independent samples here, vmap first. Batch only
    where its observation can be reused: with no signature it would cost three passes
    at every call."""
    order = ["vmap", "batch", "loop"]
    if (key is None or any(batch_problem(s) for s in active)
            or coupling(model, x, output, key) is not None):
        order.remove("batch")
    return order


def run_fastest(model: nn.Module, x: Any, samples: int, chunk: int | None, output: Output,
          sites: list[Site], active: list[Site], signed: object) -> Tensor:
    """The fastest strategy, timed on the first call for this model, input signature and
    chunk size (:func:`measure`); later calls run it, falling back where it fails."""
    key = None if signed is None else (
        signed, chunk or samples, output if isinstance(output, (str, type(None))) else id(output))
    held = CHOSEN.get(model)
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
                    choice = measure(model, x, samples, chunk, output, sites, order)
            else:
                choice = Choice(order[0], "one sample, or one strategy that applies: "
                                "nothing to time", {})
            CHOSEN[model] = (key, choice)
        else:
            choice = held[1]
        choose(choice)
        order = [choice.strategy] + [n for n in order if n != choice.strategy]
        return _with_fallback(order, model, x, samples, chunk, output, sites)


def timed(run: Run, model: nn.Module, x: Any, k: int, output: Output,
           sync: Callable[[], None]) -> tuple[Tensor, float]:
    sync()
    start = time.perf_counter()
    out = run(model, x, k, None, output)
    sync()
    return out, time.perf_counter() - start


def measure(model: nn.Module, x: Any, samples: int, chunk: int | None, output: Output,
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
            _, t1 = timed(run, model, x, 1, output, sync)
            _, tk = timed(run, model, x, k, output, sync)
        except OutputError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure means: time the next one
            if out_of_memory(error):
                raise
            # not a warning: auto's job is to find what runs (last_choice says why)
            failed.append(f"{name} failed in {failing_module(model, error)} "
                          f"({reason(error)})")
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
    why = (f"fastest when timed on this model and input ({timings} predicted for "
              f"{samples} samples in chunks of {per_call})"
              + (f"; {'; '.join(failed)}" if failed else ""))
    return Choice(best, why, predicted)


def _whole_chunk(run: Run, model: nn.Module, x: Any, per_call: int, output: Output,
                 sync: Callable[[], None]) -> float:
    """Seconds for one whole chunk: the least of two runs where one is short (a short
    run is the noisiest), inf where it does not fit in memory."""
    try:
        _, t = timed(run, model, x, per_call, output, sync)
        if t < 0.05:
            t = min(t, timed(run, model, x, per_call, output, sync)[1])
    except Exception as error:
        if not out_of_memory(error):
            raise
        return math.inf  # a whole chunk does not fit: not the fastest
    return t


def _on_gpu(model: nn.Module, x: Any) -> bool:
    """Whether the work runs on an accelerator (:func:`model_device` off the CPU)."""
    return model_device(model, x).type not in ("cpu", "meta")


def _synchronizer(model: nn.Module, x: Any) -> Callable[[], None]:
    """Waits for the device's queued work, so that a timing measures it."""
    if _on_gpu(model, x) and torch.cuda.is_available():
        return torch.cuda.synchronize
    return lambda: None


def _with_fallback(order: list[str], model: nn.Module, x: Any, samples: int,
                   chunk: int | None, output: Output, sites: list[Site]) -> Tensor:
    """The first strategy of ``order`` that runs, warning for each that failed."""
    for i, name in enumerate(order):
        run = functools.partial(in_memory, sampler(name, sites), name)
        if i == len(order) - 1:
            return run(model, x, samples, chunk, output)
        try:
            return run(model, x, samples, chunk, output)
        except OutputError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure means: next strategy
            warnings.warn(
                f"mc_predict: strategy {name!r} failed in {failing_module(model, error)} "
                f"({reason(error)}); falling back to {order[i + 1]!r}",
                RuntimeWarning, stacklevel=4)
    raise AssertionError("unreachable")  # pragma: no cover
