"""Consistent Monte Carlo dropout: each sample is one network, the same for every input.

``mc_predict`` normally draws each input's masks independently, which is what
uncertainty per input needs. BatchBALD's joint entropy (Kirsch et al. 2019, their
"consistent MC dropout") needs more: in sample t, every input of the batch, of every
chunk and of every later call sees the same dropped units. Here sample t seeds one
generator from ``(seed, t)`` and every dropout site draws its noise from it with the
batch dimension broadcast (size 1), so the draws do not depend on the batch either.

The sites and how each shares its draw:

- element, channel and alpha dropout (torch's and dropkit's), Gaussian noise and
  dropout, DropPath, LockedDropout: the module runs in eval and its output gets the
  noise of one input, broadcast over the batch (a forward hook);
- sites whose one draw already serves the whole batch (DropConnect, EmbeddingDropout,
  ``VariationalLSTM(mask_per="batch")``): they run in training, drawing from the
  sample's generator;
- anything else (attention or functional dropout, torch's RNN dropout, DropBlock,
  ConcreteDropout, per-sequence variational masks) cannot share its draw this way and
  is refused, by name, before any pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

import dropkit.nn as dn
from dropkit.functional.alpha_dropout import SELU_ALPHA_PRIME, alpha_affine
from dropkit.mask import bernoulli_mask, normal_noise
from dropkit.sites import Site

__all__ = ["check_sites", "consistent_passes"]

Noise = Callable[[Any, Tensor, torch.Generator], Tensor]  # (module, output, generator)


def _batch_shared(x: Tensor, extra: tuple[int, ...] = ()) -> tuple[int, ...]:
    return (0, *extra) if x.dim() > 1 else extra


def _spatial(x: Tensor, spatial_ndim: int) -> tuple[int, ...]:
    dims = tuple(range(x.dim() - spatial_ndim, x.dim()))  # (N, C, *spatial) or (C, *spatial)
    return (0, *dims) if x.dim() == spatial_ndim + 2 else dims


def _inverted(x: Tensor, p: float, dims: tuple[int, ...], g: torch.Generator) -> Tensor:
    if p == 0:
        return x
    if p == 1:
        return torch.zeros_like(x)
    return x * bernoulli_mask(x, 1.0 - p, dims, generator=g).div_(1.0 - p)


def _alpha(x: Tensor, p: float, dims: tuple[int, ...], g: torch.Generator) -> Tensor:
    if p == 0:
        return x
    a, b = alpha_affine(p)
    keep = bernoulli_mask(x, 1.0 - p, dims, generator=g)
    return a * (x * keep + SELU_ALPHA_PRIME * (1 - keep)) + b


def _channels(ndim: int) -> Noise:
    return lambda m, x, g: _inverted(x, m.p, _spatial(x, ndim), g)


_HOOKED: list[tuple[tuple[type, ...], Noise]] = [
    ((nn.Dropout, dn.Dropout), lambda m, x, g: _inverted(x, m.p, _batch_shared(x), g)),
    ((nn.Dropout1d, dn.Dropout1d), _channels(1)),
    ((nn.Dropout2d, dn.Dropout2d), _channels(2)),
    ((nn.Dropout3d, dn.Dropout3d), _channels(3)),
    ((nn.AlphaDropout, dn.AlphaDropout), lambda m, x, g: _alpha(x, m.p, _batch_shared(x), g)),
    ((nn.FeatureAlphaDropout, dn.FeatureAlphaDropout),
     lambda m, x, g: _alpha(x, m.p, _spatial(x, x.dim() - 2), g)),
    ((dn.DropPath,), lambda m, x, g: (_inverted(x, m.p, tuple(range(x.dim())), g)
                                      if m.scale_by_keep or m.p in (0, 1) else
                                      x * bernoulli_mask(x, 1 - m.p, tuple(range(x.dim())),
                                                         generator=g))),
    ((dn.LockedDropout,), lambda m, x, g: _inverted(x, m.p, (0, 1) if x.dim() == 3 else (0,),
                                                    g)),
    ((dn.GaussianDropout,), lambda m, x, g: x if m.p == 0 else x * normal_noise(
        x, 1.0, (m.p / (1 - m.p)) ** 0.5, _batch_shared(x), generator=g)),
    ((dn.GaussianNoise,), lambda m, x, g: x if m.std == 0 else x + normal_noise(
        x, 0.0, m.std, _batch_shared(x), generator=g)),
]


def _hook_for(module: nn.Module) -> Noise | None:
    for types, noise in _HOOKED:
        if type(module) in types:  # exact classes: a subclass may draw otherwise
            return noise
    return None


def _shares_by_itself(site: Site) -> bool:
    return hasattr(site.module, "generator") and site.shares_noise_across_batch


def check_sites(sites: list[Site]) -> tuple[list[nn.Module], list[nn.Module]]:
    """The modules to hook and the modules that share their draw by themselves; raises
    naming every site that can do neither."""
    hooked: dict[int, nn.Module] = {}
    own: dict[int, nn.Module] = {}
    refused = []
    for s in sites:
        if s.rate == 0:
            continue  # it draws nothing
        # a module whose rate other code reads (attention passing `self.dropout.p` to
        # scaled_dot_product_attention) has other gates: its own forward never draws
        own_gate = all(g is s.module for _, g in s.gates)
        if s.kind == "module" and own_gate and _hook_for(s.module) is not None:
            hooked[id(s.module)] = s.module
        elif s.kind in ("module", "attribute") and _shares_by_itself(s):
            own[id(s.module)] = s.module
        else:
            refused.append(s.describe())
    if refused:
        raise ValueError(
            "mc_predict: consistent sampling needs every dropout site to draw one mask for "
            f"the whole batch, and {', '.join(refused)} cannot (attention and functional "
            "dropout, torch's RNN dropout, DropBlock, ConcreteDropout and per-sequence "
            "variational masks draw per input); use consistent=False, or dropkit modules "
            "there (VariationalLSTM with mask_per='batch')")
    return list(hooked.values()), list(own.values())


@contextmanager
def _generators(modules: list[nn.Module], g: torch.Generator) -> Iterator[None]:
    saved = [(m, getattr(m, "generator")) for m in modules]  # noqa: B009
    try:
        for m in modules:
            setattr(m, "generator", g)  # noqa: B010 (nn.Module's typing)
        yield
    finally:
        for m, generator in saved:
            setattr(m, "generator", generator)  # noqa: B010


def consistent_passes(run: Callable[[], Tensor], hooked: list[nn.Module],
                      own: list[nn.Module], samples: int, seed: int,
                      device: torch.device) -> Tensor:
    """``samples`` passes of ``run()``, pass t drawing every mask from the seed
    ``(seed, t)`` with the batch broadcast; the model's hooked sites must be in eval and
    ``own`` in training (the caller's ``only_training``)."""
    g = torch.Generator(device=device)

    def hook(module: nn.Module, args: Any, output: Tensor) -> Tensor:
        noise = _hook_for(module)
        assert noise is not None
        return noise(module, output, g)

    handles = [m.register_forward_hook(hook) for m in hooked]
    try:
        outs = []
        with _generators(own, g) if own else nullcontext():
            for t in range(samples):
                g.manual_seed(seed * 1_000_003 + t)
                outs.append(run())
        return torch.stack(outs)
    finally:
        for h in handles:
            h.remove()
