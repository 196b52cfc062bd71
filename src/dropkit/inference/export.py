"""Monte Carlo dropout as a program: T samples in one call, exported with sampling on.

``torch.onnx.export`` of a model in training mode keeps a ``Dropout`` node that
onnxruntime runs as the identity, so every "sample" is the same; ``torch.export``
keeps ``aten.dropout`` but its program cannot be switched between modes, and nothing
makes T samples one call. :func:`dropkit.export_mc` traces a sampler instead: exactly the
sites :func:`dropkit.mc_mode` switches on draw (BatchNorm stays in eval), torch's
dropout calls are rerouted to dropkit's draws, and every draw comes from one stream:

- ``seed_input=True``: the program takes ``seed`` and ``offset`` (0-dim int64) and
  its masks are Philox draws, a pure function of them
  (:mod:`dropkit.seeded.stream`): the same seed gives the same samples, in eager
  torch and in onnxruntime, and two seeds give two independent sets.
- ``seed_input=False``: the runtime's generator (ONNX ``RandomUniformLike``), faster,
  but no request can be replayed: ONNX's random ops take their seed as an attribute
  fixed at export time, not as an input.

Before it returns, the program is checked: a random op left in its graph that does not
come from the stream (a model's own ``torch.randint``, an ``aten.dropout`` that was not
rerouted) is refused by the module that made it, and its samples must differ.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram

from dropkit._torch_compat import ONNX_REGISTRATION_LOGGER, OpOverload, argument_names
from dropkit._trace import only_training, split_inputs
from dropkit.errors import UsageError, UsageTypeError
from dropkit.inference.mc import check_differ, check_one_path, check_request
from dropkit.inference.sampling.batch import (
    batchable,
    check_batchable,
    check_uncoupled,
    coupling,
    over_batch,
    tile,
)
from dropkit.inference.sampling.failures import failing_module, reason
from dropkit.inference.sampling.output import Output, forward
from dropkit.inference.sampling.reroute import StreamDraws
from dropkit.mask import stream_draws
from dropkit.seeded.stream import CounterStream, RuntimeStream
from dropkit.tools.sites import Site, discover_cached, gates_of, signature

__all__ = ["export_mc", "STRATEGIES", "random_ops", "quiet_export"]

STRATEGIES = ("auto", "batch", "loop")


class _Sampler(nn.Module):
    """``samples`` Monte Carlo samples of ``model``'s selected output in one call,
    ``(samples, N, ...)``: the input tiled along its batch dim, or a pass per sample;
    the draws keyed by ``seed`` and ``offset`` where given, the runtime's otherwise."""

    def __init__(self, model: nn.Module, samples: int, strategy: str, output: Output) -> None:
        super().__init__()
        self.model = model
        self.samples, self.strategy, self.output = samples, strategy, output

    def forward(self, input: Any, seed: Tensor | None = None, offset: Tensor | None = None
                ) -> Tensor:
        stream = (CounterStream(seed, offset) if seed is not None and offset is not None
                  else RuntimeStream())
        with stream_draws(stream), StreamDraws(stream):
            if self.strategy == "batch":
                tiled, n = tile(input, self.samples)
                out = forward(self.model, tiled, self.output)
                return out.reshape(self.samples, n, *out.shape[1:])
            return torch.stack([forward(self.model, input, self.output)
                                for _ in range(self.samples)])


def _seed_args(seed: int) -> tuple[Tensor, Tensor]:
    """A program's ``seed`` and ``offset`` inputs: ``seed`` at offset 0."""
    return torch.tensor(seed, dtype=torch.int64), torch.tensor(0, dtype=torch.int64)


def _check_args(model: Any, samples: int, strategy: str, output: Output,
                seed_input: bool) -> None:
    check_request("export_mc", model, samples, output)
    if strategy not in STRATEGIES:
        raise UsageError(f"export_mc: expected `strategy` to be one of {STRATEGIES} (an "
                         f"exported program cannot hold vmap), got {strategy!r}")
    if not isinstance(seed_input, bool):
        raise UsageTypeError(f"export_mc: expected `seed_input` to be a bool, got "
                             f"{type(seed_input).__name__}")


def _strategy(asked: str, model: nn.Module, x: Any, output: Output, active: list[Site],
              key: object) -> str:
    if asked == "loop":
        return "loop"
    if asked == "batch":
        check_batchable("export_mc", "sample", active)
        check_uncoupled("export_mc", model, x, output, key)
        return "batch"
    batch = batchable(active) and coupling(model, x, output, key) is None
    return "batch" if batch else "loop"


def _batch_dims(x: Any) -> Any:
    """The dynamic shapes of ``x``: dim 0 of every batch tensor sized by torch
    (``Dim.AUTO``: static where the model fixes it), nothing else."""
    return over_batch(x, lambda v: {0: Dim.AUTO}, lambda v: None)[0]


def export_mc(model: nn.Module, example_input: Any, samples: int = 30, *,
              seed_input: bool = True, strategy: str = "auto", output: Output = None,
              ) -> ExportedProgram:
    """``model``'s Monte Carlo dropout as a ``torch.export`` program: one call returns
    ``samples`` samples, ``(samples, N, ...)``, with sampling on.

    Args:
        model: the model; its modes, buffers and random streams are left as they were.
        example_input: one valid input (a tensor, a tuple of positional arguments, or a
            mapping of keyword arguments); dim 0 of its tensors is the batch, exported
            as dynamic where the model allows (use a batch of 2 or more); every other
            dim is fixed to the example's.
        samples: T, the samples per call.
        seed_input: the program takes ``seed`` and ``offset`` (0-dim int64 tensors)
            after the input, and its masks are Philox draws, a pure function of them:
            the same seed gives the same samples, and ``offset`` (in Philox counters, 4
            uniforms each) moves along one seed's stream. False: draws come from the
            runtime's generator (faster; no request can be replayed).
        strategy: ``"batch"`` tiles the input T times (one pass), ``"loop"`` traces T
            passes; ``"auto"`` takes ``"batch"`` where it gives independent samples
            (observed, as :func:`dropkit.mc_predict` does) and ``"loop"`` otherwise.
        output: which tensor of the model's output is sampled, as in
            :func:`dropkit.mc_predict`.

    Exactly the sites :func:`dropkit.mc_mode` switches on draw, BatchNorm stays in eval.
    Refused by name, before anything is exported: LayerDrop (its coin flips change the
    graph); after the trace, a random op that does not draw from the program's stream,
    and samples that are all equal or do not depend on the seed.

    Example::

        program = dropkit.export_mc(model, x, samples=30)
        samples = program.module()(x, torch.tensor(7), torch.tensor(0))  # (30, N, ...)
        dropkit.export_onnx(program, "model.onnx")  # dropkit.inference.to_onnx
    """
    _check_args(model, samples, strategy, output, seed_input)
    split_inputs("export_mc", example_input)
    key = signature(model, example_input)  # taken once: it reads every module's attributes
    sites = discover_cached(model, example_input, key)
    active = [s for s in sites if s.draws]
    if not active:
        raise UsageError("export_mc: the model has no dropout to sample (none present, or "
                         "every rate is 0): its Monte Carlo samples would all be equal")
    check_one_path("export_mc", active, "export", "an exported graph")
    chosen = _strategy(strategy, model, example_input, output, active, key)
    sampler = _Sampler(model, samples, chosen, output)
    args = (example_input, *_seed_args(1)) if seed_input else (example_input,)
    dims = (_batch_dims(example_input), None, None) if seed_input else (
        _batch_dims(example_input),)
    with torch.no_grad(), only_training(model, gates_of(sites)):
        try:
            with quiet_export():
                program = torch.export.export(sampler, args, dynamic_shapes=dims)
        except Exception as error:
            raise _untraceable(model, error) from error
    _check_graph(program, seed_input)
    _check_samples(program, example_input, active, seed_input)
    return program


def _untraceable(model: nn.Module, error: Exception) -> Exception:
    """The trace's failure as one line naming the module whose code was running."""
    where = failing_module(model, error)
    if "data-dependent" in str(error) or "DataDependent" in type(error).__name__:
        return UsageError(
            f"export_mc: cannot export {where}: its code branches on a value computed in "
            "the pass (a random draw deciding whether a layer runs, as LayerDrop does), "
            "and an exported graph has one fixed path; set the rate behind that draw to 0 "
            "(for a transformers model, its config's layerdrop) before exporting")
    return RuntimeError(f"export_mc: torch.export could not trace {where}: {reason(error)}")


def _where(node: torch.fx.Node) -> str:
    """The module whose code made ``node``, from the trace's module stack."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "the model's own forward"
    path, kind = list(stack.values())[-1]
    name = path.removeprefix("L['self'].").removeprefix("model").removeprefix(".")
    kind = kind if isinstance(kind, str) else kind.__name__
    kind = kind.rsplit(".", 1)[-1]
    return f"module {name!r} ({kind})" if name else f"the model's own forward ({kind})"


def _draws(node: torch.fx.Node) -> bool:
    """Whether ``node`` draws: an op tagged random by torch, unless its ``dropout_p``
    (fused attention) is 0."""
    target: Any = node.target
    if not (node.op == "call_function" and isinstance(target, OpOverload)
            and torch.Tag.nondeterministic_seeded in target.tags):
        return False
    names = argument_names(target)
    if "dropout_p" not in names:
        return True
    at = names.index("dropout_p")
    p = node.kwargs.get("dropout_p", node.args[at] if len(node.args) > at else 0.0)
    return not (isinstance(p, (int, float)) and p == 0)


def random_ops(program: ExportedProgram) -> list[torch.fx.Node]:
    """The nodes of ``program``'s graph that draw from a generator."""
    return [n for n in program.graph.nodes if _draws(n)]


def _fixed_seed_ops(program: ExportedProgram) -> list[torch.fx.Node]:
    """Calls of dropkit's seeded ops: their seeds were fixed when the program was traced."""
    return [n for n in program.graph.nodes if n.op == "call_function"
            and isinstance(n.target, OpOverload)
            and n.target.name().startswith("dropkit::seeded_")]


def _check_graph(program: ExportedProgram, seeded: bool) -> None:
    for node in _fixed_seed_ops(program):
        raise UsageError(
            f"export_mc: {_where(node)} calls dropkit.seeded with a seed of its own, which "
            "the trace fixed: its mask would be the same in every request; use a "
            "dropkit.nn module (its seeded backend draws from the program's stream)")
    for node in random_ops(program):
        op = node.target.name()  # type: ignore[union-attr]
        if "dropout" in op:
            raise UsageError(
                f"export_mc: {_where(node)} calls {op}, which dropkit did not reroute to its "
                "draws; ONNX runtimes run a Dropout node as the identity, so the samples "
                "would all be equal")
        if seeded:
            raise UsageError(
                f"export_mc: {_where(node)} draws with {op}, which does not follow the "
                "program's seed input, so its samples could not be replayed; export with "
                "seed_input=False to let the runtime draw every mask")


def _check_samples(program: ExportedProgram, x: Any, active: list[Site], seeded: bool
                   ) -> None:
    """Never silent: the program's samples must differ, and follow the seed."""
    run = program.module()
    first = run(x, *_seed_args(1)) if seeded else run(x)
    check_differ(first, active, "export_mc")
    if seeded and torch.equal(first, run(x, *_seed_args(2))):
        raise RuntimeError(
            "export_mc: seeds 1 and 2 gave the exported program the same samples: its "
            "noise does not follow the seed input (a draw outside torch, from NumPy or "
            "Python's random, is fixed at export time)")


@contextmanager
def quiet_export() -> Iterator[None]:
    """torch.onnx's and torch.export's chatter off: its notes that torchvision's ops are
    not installed, its progress lines, and pytree's deprecation warning."""
    logger = logging.getLogger(ONNX_REGISTRATION_LOGGER)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)
