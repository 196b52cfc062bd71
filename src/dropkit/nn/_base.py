"""The base every dropout module shares: a validated rate, a generator, a repr."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.fx import Proxy

from dropkit._checks import check_probability
from dropkit._fx import TracedAsLeaf
from dropkit._triton import HAS_TRITON
from dropkit.errors import UsageError, UsageTypeError
from dropkit.mask import device_seeds, draws_redirected, in_place_ok


class RateMixin(TracedAsLeaf):
    """A drop probability ``p`` validated on every assignment.

    Schedules and ``set_rate`` assign ``module.p`` between steps; a bad value raises
    there, naming the module, instead of deep inside the next forward pass.
    ``rate_attribute`` tells the registry of dropout sites (:mod:`dropkit.tools.sites`) that
    this module samples in training mode, at the rate held there.
    """

    rate_attribute = "p"
    # True where one draw serves the whole batch (weights, vocabulary rows): Monte Carlo
    # samples then cannot come from replicating the input along the batch.
    shares_noise_across_batch = False
    _allow_one = True  # False where the noise is undefined at p = 1
    _p: float

    @property
    def p(self) -> float:
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        checked = check_probability(type(self).__name__, value, allow_one=self._allow_one)
        # kept as given, as torch keeps it: Dropout(1) reprs as p=1, like torch's
        self._p = value if isinstance(value, (int, float)) else checked


class RateModule(RateMixin, nn.Module):
    """The base of dropkit's dropout modules: a validated rate, a generator, a repr."""

    def __init__(self, p: float, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.p = p
        self.generator = generator

    def extra_repr(self) -> str:
        return f"p={self.p}"


class InplaceRateModule(RateModule):
    """A rate module that can overwrite its input, as torch's ``_DropoutNd``."""

    def __init__(
        self, p: float = 0.5, inplace: bool = False, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(p, generator=generator)
        self.inplace = inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


BACKENDS = ("auto", "torch", "seeded")
DEFAULT_BACKEND = "auto"
#: "auto" takes the seeded kernels for CUDA tensors of these dtypes (each verified bit-equal
#: to the CPU path on an H100) from this many elements per call. There, on an H100, they
#: were at least as fast as the torch backend (torch's fused kernel) in every dtype, in
#: inference and in training (forward + backward), 1.12x to 1.49x at 2**27 and 2**28
#: elements; below, the seeded path's host work per call (about 0.1 ms, 2-3x torch's)
#: loses, in bf16 and fp16 training up to 2**26 (benchmarks/gpu_check.py --backends,
#: BENCHMARKS.md).
AUTO_SEEDED_MIN_NUMEL = 2**27
AUTO_SEEDED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _capturing(input: Tensor) -> bool:
    """Whether ``input``'s kernels are being recorded into a CUDA graph now, or warmed up
    for one (:func:`dropkit.mask.seeds_on_device`); never inside torch.compile's trace,
    which decides its own draws."""
    return (input.is_cuda and not torch.compiler.is_compiling()
            and (device_seeds() or torch.cuda.is_current_stream_capturing()))


class SeededBackendMixin:
    """The ``backend`` switch of the elementwise variants (see :mod:`dropkit.seeded`).

    ``"torch"`` draws a mask through :mod:`dropkit.mask` (on CUDA, from the default
    generator, torch's fused kernel); ``"seeded"`` draws one seed per call and recomputes
    the mask from it in backward (no mask memory, Triton kernels on CUDA); ``"auto"`` (the
    default) is seeded where that was measured faster, on CUDA tensors of
    ``AUTO_SEEDED_MIN_NUMEL`` (2**27) elements or more with Triton installed, torch
    otherwise (on the CPU, always). Inside the capture of a CUDA graph
    (``torch.cuda.graph``, :func:`dropkit.mc_graph`) a seed read on the host would be
    replayed unchanged, one mask at every replay: the seed is drawn on the GPU instead,
    by torch's CUDA generator, which is graph-safe (each replay draws anew), and the
    kernel reads it there; without the kernel (no Triton, another dtype) or with a
    generator of the module's own, the torch path draws. With
    ``seed_per_rank`` the rank enters the seed under ``torch.distributed``, so
    data-parallel ranks draw different masks; False gives every rank of the group the
    same masks, as tensor parallelism needs.
    """

    backend: str
    seed_per_rank: bool
    generator: torch.Generator | None

    def _set_backend(self, backend: str, seed_per_rank: bool) -> None:
        if backend not in BACKENDS:
            raise UsageError(f"{type(self).__name__}: expected `backend` to be one of "
                             f"{BACKENDS}, got backend={backend!r}")
        self.backend = backend
        self.seed_per_rank = seed_per_rank

    def _backend_repr(self) -> str:
        return "" if self.backend == DEFAULT_BACKEND else f", backend={self.backend!r}"

    def _seeded(self, input: Tensor) -> bool:
        """The one place that decides whether a call takes the seeded path."""
        if self.backend == "torch" or (self.backend == "auto" and isinstance(input, Proxy)):
            return False  # a traced root "auto" module: the torch path, as on the CPU
        if draws_redirected():
            return False  # consistent sampling or an exported program decides every draw
        if isinstance(input, Proxy):
            raise UsageTypeError(
                f"{type(self).__name__}: backend={self.backend!r} cannot be traced by torch.fx "
                "as the root module (it draws a fresh seed per call, which a graph would "
                "freeze); trace a model that contains it (it is then one call_module node), "
                "or use backend='torch'"
            )
        if self.backend == "auto" and not (
                input.is_cuda and HAS_TRITON and input.dtype in AUTO_SEEDED_DTYPES
                and input.numel() >= AUTO_SEEDED_MIN_NUMEL):
            return False  # decided before the capture's question: no cost on this path
        # in a CUDA graph the seed is drawn on the GPU by torch's generator, which is
        # graph-safe, and the kernel reads it there; without the kernel or with a
        # generator of the module's own, the torch path draws instead
        return not _capturing(input) or (HAS_TRITON and input.dtype in AUTO_SEEDED_DTYPES
                                         and self.generator is None)

    def _new_seed(self, input: Tensor) -> Tensor:
        """A fresh seed from the module's generator (or the global one), rank included; in
        a CUDA graph's capture, on ``input``'s GPU from torch's generator (a seed read on
        the host would be replayed unchanged: one mask for every replay)."""
        from dropkit import seeded  # imports Triton only when a seeded call happens

        if _capturing(input):
            seed = torch.randint(0, 2**62, (), dtype=torch.int64, device=input.device)
        else:
            seed = seeded.new_seed(self.generator)
        return seeded.rank_seed(seed) if self.seed_per_rank else seed


class ElementwiseRateModule(SeededBackendMixin, InplaceRateModule):
    """An in-place-capable rate module with the ``backend`` switch (elementwise masks)."""

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        generator: torch.Generator | None = None,
        backend: str = DEFAULT_BACKEND,
        seed_per_rank: bool = True,
    ) -> None:
        self._set_backend(backend, seed_per_rank)  # validated before any state is set
        super().__init__(p, inplace, generator=generator)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._backend_repr()

    def _elementwise(self, input: Tensor, torch_fn: Callable[..., Tensor],
                     seeded_fn: str) -> Tensor:
        """The module's draw: ``dropkit.seeded.<seeded_fn>`` where the backend says so,
        ``torch_fn(input, p, training, inplace, generator=)`` otherwise."""
        # not a tensor: the torch path's checks name what they expected
        if self.training and isinstance(input, (Tensor, Proxy)) and self._seeded(input):
            from dropkit import seeded  # imports Triton only when a seeded call happens

            out = getattr(seeded, seeded_fn)(input, self.p, True, seed=self._new_seed(input))
            # its ops return a new tensor (autograd does not take mutating custom ops), so
            # an in-place module copies the result back into its input
            return input.copy_(out) if in_place_ok(self.inplace) else out
        return torch_fn(input, self.p, self.training, self.inplace, generator=self.generator)
