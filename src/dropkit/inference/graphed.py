"""Monte Carlo dropout replayed from a CUDA graph: the T samples without the host's work.

On a GPU, :func:`dropkit.mc_predict` of a small model is bound by the host: vmap's
dispatch, the switching of the sites' flags and the discovery cache's key cost more
than the kernels they launch. :func:`dropkit.mc_graph` runs that work once, records the
kernels of the strategy it chose in a CUDA graph (``torch.cuda.graph``), and every call then
copies the input in, replays the graph and returns a copy of the samples.

Fresh noise at every replay: torch's CUDA generator is graph-safe (the graph reads its
Philox seed and offset from device memory, and each replay advances the offset, as
FlashAttention's dropout does), so a replay draws what an eager call would, and
``torch.cuda.manual_seed`` before a call makes it repeatable. What a graph cannot hold
is refused or handled by name:

- a draw whose seed is read on the host would replay one mask for ever: inside a
  capture, dropkit's seeded backend draws its seed on the GPU from torch's generator
  and its kernel reads it there, graph-safe Philox as FlashAttention's dropout keeps it
  (where the kernel cannot run, the torch path draws: :class:`dropkit.nn.Dropout`);
- LayerDrop decides in Python which blocks run: refused, as a graph has one path;
- a random op whose result lands off the graph's device (a model's own
  ``torch.randn(...)`` on the CPU, copied over) would be recorded once: refused during
  the capture by the module whose code drew it;
- after the capture two replays are compared, and identical samples are refused (noise
  drawn outside torch, by NumPy or Python's ``random``, is fixed at capture).

What the graph holds fixed is checked at every call: the input's layout (its
structure, shapes, dtypes and devices; another batch size is an error naming both),
every site's rate, and the storage of every parameter and buffer. A rate set anew
(a schedule, :func:`dropkit.set_rate`) or parameters moved (``model.half()``, a
``load_state_dict(assign=True)``) make the next call capture again; weights updated in
place (an optimizer step) are read by the replay as they are.

Learned from: PyTorch's ``torch.cuda.make_graphed_callables`` and CUDA-graph docs
("whole-network capture", static inputs and outputs, warm-up on a side stream).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import Tensor, nn

from dropkit._torch_compat import TorchDispatchMode
from dropkit._trace import CallArgs, model_device, only_training, split_inputs
from dropkit.errors import UsageError, UsageTypeError
from dropkit.inference import mc
from dropkit.inference.sampling import auto
from dropkit.inference.sampling.failures import failing_module, reason
from dropkit.inference.sampling.output import Output
from dropkit.inference.sampling.strategies import sampler
from dropkit.mask import seeds_on_device
from dropkit.tools.sites import Site, discover_cached, gates_of, signature

__all__ = ["mc_graph", "MCGraph", "WARMUP", "WatchHostDraws", "HostDraw"]

_LOG = logging.getLogger("dropkit")

#: Eager runs of the chosen strategy on a side stream before the capture, as torch's
#: CUDA-graph docs ask (lazy initialization, cuBLAS workspaces, autotuning).
WARMUP = 3

_PLAIN = (bool, int, float, str, type(None))


def _leaves(fn: str, x: Any) -> list[tuple[str, Any]]:
    """``x``'s arguments, each named (``argument 0``, ``'input_ids'``): a tensor or a
    plain value (a graph can hold neither a nested structure of tensors nor an object
    whose effect it cannot check)."""
    args, kwargs = split_inputs(fn, x)
    named = [(f"argument {i}", v) for i, v in enumerate(args)]
    named += [(repr(k), v) for k, v in kwargs.items()]
    for name, v in named:
        if not isinstance(v, (Tensor, *_PLAIN)):
            raise UsageTypeError(
                f"{fn}: expected each input to be a tensor or a plain value (bool, int, "
                f"float, str, None), got {type(v).__name__} at {name}")
    return named


def _layout(named: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """What a replay fixes of an input: each tensor's shape, dtype and device, and each
    plain value itself."""
    return [(name, (tuple(v.shape), v.dtype, v.device) if isinstance(v, Tensor) else v)
            for name, v in named]


def _show(layout: Any) -> str:
    if isinstance(layout, tuple) and len(layout) == 3 and isinstance(layout[1], torch.dtype):
        shape, dtype, device = layout
        return f"a {str(dtype).removeprefix('torch.')} tensor of shape {shape} on {device}"
    return repr(layout)


def _rebuilt(x: Any, values: list[Any]) -> Any:
    """``x``'s structure holding ``values`` in the order of :func:`_leaves`."""
    args, kwargs = split_inputs("mc_graph", x)
    new_args, new_kwargs = tuple(values[:len(args)]), dict(
        zip(kwargs, values[len(args):], strict=True))
    if isinstance(x, CallArgs):
        return CallArgs(new_args, new_kwargs)
    if isinstance(x, tuple):
        return new_args
    if not args:
        return new_kwargs
    return new_args[0]


def _state(model: nn.Module, sites: list[Site]) -> tuple[Any, ...]:
    """What a replay reads without checking: every site's rate, and where every
    parameter and buffer lives."""
    return (tuple(s.rate for s in sites),
            tuple(t.data_ptr() for t in model.parameters()),
            tuple(t.data_ptr() for t in model.buffers()))


def _check_device(fn: str, model: nn.Module, x: Any, named: list[tuple[str, Any]]
                  ) -> torch.device:
    device = model_device(model, x)
    if device.type != "cuda":
        raise UsageError(f"{fn}: expected the model on a CUDA device (a CUDA graph records "
                         f"GPU kernels), got its parameters on {device}")
    for name, v in named:
        if isinstance(v, Tensor) and v.device != device:
            raise UsageError(f"{fn}: expected every input tensor on the model's device "
                             f"{device}, got {name} on {v.device}")
    return device


class HostDraw(Exception):
    """A random op whose result lands off the graph's device, seen during a capture."""

    def __init__(self, op: str, device: torch.device) -> None:
        super().__init__(f"{op} drew on {device}")
        self.op, self.device = op, device


class WatchHostDraws(TorchDispatchMode):  # type: ignore[misc]
    """Inside, a random op (tagged ``nondeterministic_seeded``) whose result is not on
    ``device`` raises ``HostDraw``: a CUDA graph would record that draw once."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if torch.Tag.nondeterministic_seeded in func.tags:
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, Tensor) and t.device != self.device:
                    raise HostDraw(func.name(), t.device)
        return out


class MCGraph:
    """``samples`` Monte Carlo samples of a model at one input layout, replayed from a
    CUDA graph (made by :func:`dropkit.mc_graph`; see :mod:`dropkit.inference.graphed`).

    Attributes:
        strategy: the sampling strategy recorded (``"vmap"``, ``"batch"`` or ``"loop"``).
        seconds: for ``"auto"``, each strategy's replay time in seconds, as measured at the
            last capture ({} where one strategy was recorded).
        captures: how many times the graph was captured (1, plus one per change of a
            rate or of the parameters' storage).
    """

    def __init__(self, model: nn.Module, example: Any, samples: int, strategy: str,
                 chunk_size: int | None, output: Output) -> None:
        self.model, self.samples, self.output = model, samples, output
        self._asked, self._chunk = strategy, chunk_size
        named = _leaves("mc_graph", example)
        self.device = _check_device("mc_graph", model, example, named)
        self._layout = _layout(named)
        # the graph reads its input from here: a copy, so the caller's tensor stays theirs
        self._inputs = [v.detach().clone() if isinstance(v, Tensor) else v for _, v in named]
        self._static = _rebuilt(example, self._inputs)
        self.captures = 0
        self.strategy = ""
        self.seconds: dict[str, float] = {}
        self._capture()

    def _capture(self) -> None:
        model, x = self.model, self._static
        # the eager call: discovery, the measured choice of "auto", and the refusal of
        # samples that are all identical
        mc.mc_predict(model, x, self.samples, strategy=self._asked, chunk_size=self._chunk,
                      output=self.output)
        choice = auto.last_choice
        assert choice is not None  # mc_predict set it
        sites = discover_cached(model, x, signature(model, x))
        active = [s for s in sites if s.draws]
        mc.check_one_path("mc_graph", active, "capture", "a CUDA graph")
        # "auto": every strategy the eager call timed is recorded and its replay timed (a
        # graph has no host work, so the eager ranking need not hold); the fastest is kept
        tried = [*choice.seconds] if self._asked == "auto" and choice.seconds else [
            choice.strategy]
        recorded: dict[str, tuple[torch.cuda.CUDAGraph, Tensor]] = {}
        failed: list[str] = []
        for name in tried:
            try:
                recorded[name] = self._record(name, sites)
            except Exception as error:
                refusal = _uncapturable(model, name, error, self.device)
                if len(tried) == 1 or isinstance(refusal, UsageError):
                    raise refusal from error
                failed.append(str(refusal))
        if not recorded:
            raise RuntimeError("mc_graph: no strategy could be captured: " + "; ".join(failed))
        for graph, out in recorded.values():
            _check_replays(graph, out, active)
        self.seconds = {name: _replay_seconds(graph, self.device) for name, (graph, _) in
                        recorded.items()} if len(recorded) > 1 else {}
        self.strategy = min(recorded, key=lambda n: self.seconds.get(n, 0.0))
        self._graph, self._out = recorded[self.strategy]
        self._sites, self._state = sites, _state(model, sites)
        self.captures += 1
        _LOG.debug("mc_graph: captured %s (%d samples; replays timed: %s; %s), capture %d",
                   self.strategy, self.samples, self.seconds, failed, self.captures)

    def _record(self, strategy: str, sites: list[Site]) -> tuple[torch.cuda.CUDAGraph, Tensor]:
        """``strategy``'s draw of the samples, warmed up on a side stream and captured."""
        model, x, run = self.model, self._static, sampler(strategy, sites)

        def draw() -> Tensor:
            with only_training(model, gates_of(sites)):
                return run(model, x, self.samples, self._chunk, self.output)

        graph = torch.cuda.CUDAGraph()
        side = torch.cuda.Stream(self.device)
        # on the model's GPU; the warm-up draws its seeds as the capture will, so that every
        # kernel the capture launches has run (and compiled) before
        with torch.no_grad(), torch.cuda.device(self.device), seeds_on_device():
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP):
                    draw()
            torch.cuda.current_stream(self.device).wait_stream(side)
            with torch.cuda.graph(graph), WatchHostDraws(self.device):
                out = draw()
        return graph, out

    def __call__(self, x: Any) -> Tensor:
        """``(samples, *output.shape)``: fresh samples of ``model`` on ``x``, whose layout
        must be the example's; a new tensor at every call."""
        named = _leaves("mc_graph", x)
        layout = _layout(named)
        if layout != self._layout:
            raise UsageError(f"mc_graph: expected the input layout it was captured with; "
                             f"{_difference(self._layout, layout)} (build another graph "
                             "for it, or pad the batch)")
        with torch.no_grad():
            for static, (_, v) in zip(self._inputs, named, strict=True):
                if isinstance(v, Tensor):
                    static.copy_(v)
            if _state(self.model, self._sites) != self._state:
                self._capture()  # a rate set anew, parameters moved: the old graph is stale
            self._graph.replay()
            return self._out.clone()


def _difference(had: list[tuple[str, Any]], got: list[tuple[str, Any]]) -> str:
    names_had, names_got = [n for n, _ in had], [n for n, _ in got]
    if names_had != names_got:
        return f"expected the arguments {names_had}, got {names_got}"
    for (name, a), (_, b) in zip(had, got, strict=True):
        if a != b:
            return f"expected {name} to be {_show(a)}, got {_show(b)}"
    return "the same layout"  # not reached: the layouts differ somewhere


def _uncapturable(model: nn.Module, strategy: str, error: Exception, device: torch.device
                  ) -> Exception:
    """The capture's failure as one line naming the module whose code was running (the
    graph's own error on exit may stand in front of it: the chain is searched)."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, HostDraw):
        cause = cause.__context__
    if isinstance(cause, HostDraw):
        return UsageError(
            f"mc_graph: {failing_module(model, cause)} draws with {cause.op} on "
            f"{cause.device}, off the graph's device {device}: a CUDA graph would record "
            "that noise once and replay it at every call; draw it on the model's device "
            "(torch.randn_like(x), not torch.randn(...).to(x.device)), or, for a draw that "
            "decides which layers run (a config's layerdrop), set its rate to 0")
    return RuntimeError(
        f"mc_graph: {failing_module(model, error)} could not be captured in a CUDA graph "
        f"(strategy {strategy!r}): {reason(error)}. A step that waits for the host (.item(), "
        "a branch on a tensor's value, a draw on the CPU copied to the GPU) cannot be "
        "recorded; mc_predict runs such a model eagerly")


def _replay_seconds(graph: torch.cuda.CUDAGraph, device: torch.device, reps: int = 5
                    ) -> float:
    """Seconds per replay: the least of ``reps`` (the device's time, as the host waits)."""
    times = []
    for _ in range(reps):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        graph.replay()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def _check_replays(graph: torch.cuda.CUDAGraph, out: Tensor, active: list[Site]) -> None:
    """Never silent: two replays must draw other samples (a draw fixed at capture would
    give every call the same "uncertainty")."""
    graph.replay()
    first = out.clone()
    graph.replay()
    if out.numel() and torch.equal(first, out):
        raise RuntimeError(
            "mc_graph: two replays of the captured graph gave identical samples: a draw "
            "was fixed when the graph was recorded (noise drawn on the host, or from a "
            "generator the graph does not advance) in one of "
            + ", ".join(s.describe() for s in active)
            + ". Nothing is returned: every call would repeat one set of samples")


def mc_graph(model: nn.Module, example: Any, samples: int = 50, *, strategy: str = "auto",
             chunk_size: int | None = None, output: Output = None) -> MCGraph:
    """``model``'s Monte Carlo dropout recorded in a CUDA graph: ``graph(x)`` returns
    ``samples`` fresh samples, ``(samples, *output.shape)``, as :func:`dropkit.mc_predict`
    would, for an ``x`` of the example's layout.

    Args:
        model: a model on a CUDA device with at least one dropout site with a rate above
            0; its modes, buffers and random streams are left as they were.
        example: an input of the layout every call will have (a tensor, a tuple of
            positional arguments, or a mapping of keyword arguments; tensors and plain
            values only). It is copied: the graph reads its own copy.
        samples: T, the samples per call. Default: 50.
        strategy, chunk_size, output: as in :func:`dropkit.mc_predict`. ``"auto"``
            records each strategy that the eager call's measurement ran and keeps the
            one whose replay is fastest (a replay has no host work, so the eager
            ranking need not hold); a strategy that cannot be captured is skipped.

    Refused by name: a model or input not on one CUDA device; LayerDrop (its coin flips
    choose the path, and a graph has one); a step torch cannot capture; samples that
    are all identical, eagerly or between two replays. Each call checks the input's
    layout against the example's, and captures again where a site's rate or a
    parameter's storage changed (see :mod:`dropkit.inference.graphed`).

    Example::

        graph = dropkit.mc_graph(model.cuda(), x.cuda(), samples=50)
        samples = graph(x_next)  # (50, N, ...): the same layout as x, new noise
    """
    mc.check_request("mc_graph", model, samples, output)
    if strategy not in mc.STRATEGIES:
        raise UsageError(f"mc_graph: expected `strategy` to be one of {mc.STRATEGIES}, got "
                         f"{strategy!r}")
    return MCGraph(model, example, samples, strategy, chunk_size, output)
