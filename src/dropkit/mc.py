"""Monte Carlo dropout done right: BatchNorm never disturbed, samples vectorized.

``model.train()`` for MC sampling (the lesson's ``mc_dropout_predict``) also switches
BatchNorm to batch statistics and updates its running averages: wrong predictions and
a corrupted model. Here only the modules that sample are put in training mode, and
the samples are drawn with ``torch.func.vmap`` so that the network before the first
dropout runs once, not T times.

Papers: Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation"; Srivastava et
al. 2014, section 7.5 (Monte Carlo model averaging). Learned from: baal's
``MCDropoutModule``, torch-uncertainty's ``mc_dropout``.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd

import dropkit.functional as F
from dropkit.rates import find_dropout

__all__ = ["mc_mode", "mc_predict", "sampling_modules", "STRATEGIES"]

STRATEGIES = ("auto", "vmap", "batch", "loop")


def sampling_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that sample in training mode, in module order.

    Every dropout module (:func:`dropkit.find_dropout`), every module that declares
    ``stochastic = True`` (e.g. :class:`dropkit.nn.GaussianNoise`), and torch RNNs whose
    ``dropout`` acts (stacked layers).
    """
    found = []
    for name, m in model.named_modules():
        rnn = isinstance(m, nn.RNNBase) and m.dropout > 0 and m.num_layers > 1
        if rnn or getattr(m, "stochastic", False) is True or isinstance(m, _DropoutNd):
            found.append((name, m))
    names = {n for n, _ in found}
    found += [(n, m) for n, m in find_dropout(model) if n not in names]
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    return sorted(found, key=lambda item: order[item[0]])


def _rate(module: nn.Module) -> float:
    if isinstance(module, nn.RNNBase):
        return float(module.dropout)
    value = getattr(module, "p", getattr(module, "std", 1.0))
    return float(value)


@contextmanager
def mc_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Inside, every sampling module samples and every other module (BatchNorm above all)
    is in eval. On exit, also after an exception, every module's ``training`` flag is
    exactly what it was.

    Example::

        with dropkit.mc_mode(model), torch.no_grad():
            samples = torch.stack([model(x) for _ in range(50)])
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for _, m in sampling_modules(model):
            m.training = True  # not m.train(): a wrapped layer (DropConnect's) stays in eval
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def _torch_dropout_forward(m: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """dropkit's vmap-safe equivalent of a torch dropout module's forward (None: not one).

    torch's CPU dropout draws in place into a fresh tensor, which vmap refuses when the
    input is unbatched (the network before the first dropout ran once).
    """
    def call(fn: Callable[..., Tensor], **kw: Any) -> Callable[[Tensor], Tensor]:
        return lambda x: fn(x, m.p, m.training, **kw)

    if isinstance(m, nn.AlphaDropout):
        return call(F.alpha_dropout)
    if isinstance(m, nn.FeatureAlphaDropout):
        return call(F.feature_alpha_dropout)
    if isinstance(m, nn.Dropout1d):
        return call(F.dropout1d)
    if isinstance(m, nn.Dropout2d):
        # torch reads a 3D input to Dropout2d as (N, C, L): keep its meaning
        return lambda x: (F.dropout(x, m.p, m.training, broadcast_dims=(2,))
                          if x.dim() == 3 else F.dropout2d(x, m.p, m.training))
    if isinstance(m, nn.Dropout3d):
        return call(F.dropout3d)
    if isinstance(m, nn.Dropout):
        return call(F.dropout)
    return None


@contextmanager
def _vmap_safe_torch_dropout(model: nn.Module) -> Iterator[None]:
    patched = []
    for m in model.modules():
        fn = _torch_dropout_forward(m)
        if fn is not None:
            patched.append((m, m.__dict__.get("forward")))
            m.forward = fn  # type: ignore[method-assign]
    try:
        yield
    finally:
        for m, previous in patched:
            del m.forward
            if previous is not None:
                m.forward = previous  # type: ignore[method-assign]


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


def _chunks(samples: int, chunk_size: int | None) -> list[int]:
    size = chunk_size or samples
    return [min(size, samples - start) for start in range(0, samples, size)]


def _by_vmap(model: nn.Module, x: Tensor, samples: int, chunk: int | None) -> Tensor:
    # x enters unbatched: everything before the first dropout runs once, and the first
    # out-of-place draw gives every later tensor a sample dimension.
    with _vmap_safe_torch_dropout(model):
        parts = [
            torch.func.vmap(lambda _: model(x), randomness="different")(torch.arange(k))
            for k in _chunks(samples, chunk)
        ]
    return torch.cat(parts)


def _batch_problem(m: nn.Module) -> str | None:
    """Why replicating the input along dim 0 would not give independent samples here."""
    if getattr(m, "stochastic", False) and getattr(m, "shares_noise_across_batch", False):
        return "one draw serves its whole batch, so the replicated inputs would share it"
    sequence_first = isinstance(m, nn.RNNBase) or type(m).__name__ == "LockedDropout"
    if sequence_first and not getattr(m, "batch_first", True):
        return "it takes (T, N, ...) sequences, so dim 0 is time, not the batch"
    return None


def _by_batch(model: nn.Module, x: Tensor, samples: int, chunk: int | None) -> Tensor:
    if x.dim() == 0:
        raise ValueError("mc_predict: strategy 'batch' needs an input with a batch dim 0")
    for name, m in model.named_modules():
        problem = _batch_problem(m)
        if problem:
            raise ValueError(
                f"mc_predict: strategy 'batch' cannot sample module {name!r} "
                f"({type(m).__name__}): {problem}; use 'vmap' or 'loop'"
            )
    n = x.shape[0]
    parts = []
    for k in _chunks(samples, chunk):
        tiled = x.unsqueeze(0).expand(k, *x.shape).reshape(k * n, *x.shape[1:])  # (k N, ...)
        out = model(tiled)
        if out.dim() == 0 or out.shape[0] != k * n:
            raise ValueError(
                f"mc_predict: strategy 'batch' expects the output's dim 0 to be the batch "
                f"({k * n}), got output shape {tuple(out.shape)}"
            )
        parts.append(out.reshape(k, n, *out.shape[1:]))  # (k, N, ...)
    return torch.cat(parts)


def _by_loop(model: nn.Module, x: Tensor, samples: int, chunk: int | None) -> Tensor:
    return torch.stack([model(x) for _ in range(samples)])


_RUN = {"vmap": _by_vmap, "batch": _by_batch, "loop": _by_loop}


def mc_predict(
    model: nn.Module,
    x: Tensor,
    samples: int = 50,
    *,
    strategy: str = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    """Draw ``samples`` stochastic forward passes of ``model`` on ``x``.

    Runs under ``torch.no_grad()`` and :func:`mc_mode`: only dropout samples; the
    model's modes, parameters and buffers (BatchNorm's running statistics,
    ``num_batches_tracked``) are left untouched.

    Args:
        model: a model with at least one sampling module with a rate above 0.
        x: its input, batch along dim 0 (for ``"batch"``), any rank.
        samples: number of samples T. Default: 50.
        strategy: ``"vmap"`` (``torch.func.vmap(randomness="different")`` over samples:
            the network before the first dropout runs once), ``"batch"`` (replicate the
            input along the batch dim: one pass), ``"loop"`` (T passes), or ``"auto"``
            (vmap, falling back to batch, then loop, with a warning that names the module
            that failed). Default: ``"auto"``.
        chunk_size: draw at most this many samples at once, to bound memory.

    Returns:
        ``(samples, *model(x).shape)``.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"mc_predict: expected `samples` to be an int >= 1, got {samples!r}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(
            f"mc_predict: expected `chunk_size` to be None or an int >= 1, got {chunk_size!r}"
        )
    if strategy not in STRATEGIES:
        raise ValueError(
            f"mc_predict: expected `strategy` to be one of {STRATEGIES}, got {strategy!r}"
        )
    active = [n for n, m in sampling_modules(model) if _rate(m) > 0]
    if not active:
        raise ValueError(
            "mc_predict: the model has no dropout to sample (none present, or every rate "
            "is 0): Monte Carlo samples would all be equal"
        )
    order = ["vmap", "batch", "loop"] if strategy == "auto" else [strategy]
    with torch.no_grad(), mc_mode(model):
        for i, name in enumerate(order):
            if i == len(order) - 1:
                return _RUN[name](model, x, samples, chunk_size)
            try:
                return _RUN[name](model, x, samples, chunk_size)
            except Exception as error:  # noqa: BLE001 - any failure means: next strategy
                reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
                warnings.warn(
                    f"mc_predict: strategy {name!r} failed in {_failing_module(model, error)} "
                    f"({type(error).__name__}: {reason}); falling back to {order[i + 1]!r}",
                    RuntimeWarning,
                    stacklevel=2,
                )
    raise AssertionError("unreachable")  # pragma: no cover
