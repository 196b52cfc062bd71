"""Torch's dropout calls rerouted to dropkit's draws (which vmap batches, the draw
context shares and an exported program's stream feeds), and scaled dot-product
attention in its math form where it drops."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as TF
from torch import Tensor
from torch.overrides import TorchFunctionMode

import dropkit.functional as F
from dropkit._torch_compat import body_under_mode
from dropkit._trace import DROPOUT_CALLS
from dropkit.mask import Stream
from dropkit.nn._base import RateMixin
from dropkit.tools.sites import Site

__all__ = ["VmapSafeDropout", "StreamDraws", "sdpa_math", "reroutes"]


def sdpa_math(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
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


class VmapSafeDropout(TorchFunctionMode):
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
                return sdpa_math(*args, **kwargs)
        return func(*args, **kwargs)


class StreamDraws(VmapSafeDropout):
    """:class:`VmapSafeDropout` for an exported program: torch's dropout calls rerouted to
    dropkit's draws (which ``stream`` feeds, through :func:`dropkit.mask.stream_draws`),
    ``multi_head_attention_forward``'s own dropout too, and a model's raw draws
    (``rand_like``, ``Tensor.uniform_``, ``bernoulli``) taken from ``stream``, so that raw
    noise follows the program's seed as well."""

    def __init__(self, stream: Stream) -> None:
        super().__init__()
        self.stream = stream

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: Mapping[str, Any] | None = None) -> Any:
        if func is TF.multi_head_attention_forward:  # its dropout is a nested call
            return body_under_mode(self, func, args, dict(kwargs or {}))
        draw = _RAW.get(func)
        if draw is None:
            return super().__torch_function__(func, types, args, kwargs)
        return draw(self.stream, *args, **(kwargs or {}))  # the mode is off in here


def _uniform_(stream: Any, x: Tensor, a: float = 0.0, b: float = 1.0, **_: Any) -> Tensor:
    return x.copy_(stream.uniform(x) * (b - a) + a)


def _normal_(stream: Any, x: Tensor, mean: float = 0.0, std: float = 1.0, **_: Any) -> Tensor:
    return x.copy_(stream.normal(x, mean, std))


def _bernoulli_(stream: Any, x: Tensor, p: float | Tensor = 0.5, **_: Any) -> Tensor:
    return x.copy_((stream.uniform(x) < p).to(x.dtype))


def _bernoulli(stream: Any, x: Tensor, p: float | None = None, **_: Any) -> Tensor:
    return (stream.uniform(x) < (x if p is None else p)).to(x.dtype)


def _like(kind: str) -> Any:
    def draw(stream: Any, x: Tensor, *, dtype: torch.dtype | None = None, **_: Any) -> Tensor:
        noise = stream.uniform(x) if kind == "uniform" else stream.normal(x, 0.0, 1.0)
        return noise.to(dtype or x.dtype)

    return draw


_RAW: dict[Any, Any] = {
    torch.rand_like: _like("uniform"), torch.randn_like: _like("normal"),
    torch.Tensor.uniform_: _uniform_, torch.Tensor.normal_: _normal_,
    torch.Tensor.bernoulli_: _bernoulli_, torch.bernoulli: _bernoulli,
    torch.Tensor.bernoulli: _bernoulli,
}


def reroutes(sites: list[Site]) -> bool:
    """Whether a vmapped pass needs :class:`VmapSafeDropout`: unless every site is a
    dropkit module, whose draws vmap batches as they are. The mode costs a Python call
    for every torch function of the pass (on a small model, a fifth of ``mc_predict``'s
    host time). A torch dropout call that no discovery pass saw (a data-dependent
    branch) then runs as torch runs it under vmap: element and channel dropout draw per
    sample, and attention dropout on an unbatched input raises (tested), never silent."""
    return not all(s.kind == "module" and isinstance(s.module, RateMixin) for s in sites)
