"""R-Drop: two dropout passes of one batch, and a loss that pulls them together.

Liang et al. 2021, "R-Drop: Regularized Dropout for Neural Networks". The training loss
is the usual loss of both passes plus ``alpha`` times the symmetric KL divergence
between the two predictive distributions (the mean squared difference of the outputs
for regression). Learned from the official code (dropreg/R-Drop): its README's loss is
``0.5 * (ce(a) + ce(b)) + alpha * (kl(a||b) + kl(b||a)) / 2`` with the cross-entropy
averaged over the batch and the KL *summed* over it; :func:`dropkit.rdrop_loss` reduces both
terms the same way (``reduction``), so its ``alpha`` with ``"mean"`` is the README's
divided by the batch size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dropkit._checks import check_nonnegative, check_probability
from dropkit._rng import drawing_from
from dropkit._trace import model_device
from dropkit.errors import UsageError, UsageTypeError

__all__ = ["rdrop_loss", "rdrop_forward", "RDROP_STRATEGIES", "TASKS"]

RDROP_STRATEGIES = ("batch", "vmap", "loop")
TASKS = ("classification", "regression")
_REDUCTIONS = ("mean", "sum")


def _reduce(values: Tensor, keep: Tensor | None, reduction: str) -> Tensor:
    if keep is not None:
        values = values[keep]
    return values.sum() if reduction == "sum" else values.mean()


def rdrop_loss(logits_a: Tensor, logits_b: Tensor, target: Tensor | None = None, *,
               alpha: float = 1.0, reduction: str = "mean", task: str = "classification",
               label_smoothing: float = 0.0, pad_mask: Tensor | None = None) -> Tensor:
    """R-Drop's loss of two passes' outputs ``(..., C)`` (or any shape for regression).

    Classification: ``0.5 * (CE(a, y) + CE(b, y)) + alpha * 0.5 * (KL(p_a || p_b) +
    KL(p_b || p_a))``, the KL summed over the classes of each position; without
    ``target``, the KL term alone (add it to a loss of your own). Label smoothing acts on
    the cross-entropy only: the KL term compares the two passes' own distributions.
    Regression: ``0.5 * (MSE(a, y) + MSE(b, y)) + alpha * MSE(a, b)``. Each term is
    averaged (``reduction="mean"``) or summed over the positions, those where
    ``pad_mask`` is True left out (padding of sequence tasks).
    """
    if not isinstance(logits_a, Tensor) or not isinstance(logits_b, Tensor):
        raise UsageTypeError(f"rdrop_loss: expected two tensors, got {type(logits_a).__name__} "
                        f"and {type(logits_b).__name__}")
    if logits_a.shape != logits_b.shape:
        raise UsageError(f"rdrop_loss: expected the two passes' outputs to have one shape, "
                         f"got {tuple(logits_a.shape)} and {tuple(logits_b.shape)}")
    if task not in TASKS:
        raise UsageError(f"rdrop_loss: expected `task` to be one of {TASKS}, got task={task!r}")
    if reduction not in _REDUCTIONS:
        raise UsageError(f"rdrop_loss: expected `reduction` to be one of {_REDUCTIONS}, got "
                         f"reduction={reduction!r}")
    alpha = check_nonnegative("rdrop_loss", alpha, "alpha")
    label_smoothing = check_probability("rdrop_loss", label_smoothing, name="label_smoothing")
    positions = logits_a.shape[:-1] if task == "classification" else logits_a.shape
    if task == "classification" and logits_a.dim() == 0:
        raise UsageError("rdrop_loss: expected logits with a class dim, got a 0-dim tensor")
    keep = None
    if pad_mask is not None:
        if pad_mask.shape != positions or pad_mask.dtype != torch.bool:
            raise UsageError(f"rdrop_loss: expected `pad_mask` to be a bool tensor of shape "
                             f"{tuple(positions)}, got {pad_mask.dtype} {tuple(pad_mask.shape)}")
        keep = ~pad_mask
    if task == "regression":
        consistency = _reduce((logits_a - logits_b) ** 2, keep, reduction)
        if target is None:
            return alpha * consistency
        fit = 0.5 * (_reduce((logits_a - target) ** 2, keep, reduction)
                     + _reduce((logits_b - target) ** 2, keep, reduction))
        return fit + alpha * consistency
    log_a, log_b = logits_a.log_softmax(-1), logits_b.log_softmax(-1)
    # 0.5 * (KL(a||b) + KL(b||a)) = 0.5 * sum_c (p_a - p_b) (log p_a - log p_b)
    kl = 0.5 * ((log_a.exp() - log_b.exp()) * (log_a - log_b)).sum(-1)
    consistency = _reduce(kl, keep, reduction)
    if target is None:
        return alpha * consistency
    if target.shape != positions:
        raise UsageError(f"rdrop_loss: expected `target` of shape {tuple(positions)} (class "
                         f"indices), got {tuple(target.shape)}")
    c = logits_a.shape[-1]

    def ce(logits: Tensor) -> Tensor:
        per = F.cross_entropy(logits.reshape(-1, c), target.reshape(-1), reduction="none",
                              label_smoothing=label_smoothing).reshape(positions)
        return _reduce(per, keep, reduction)

    return 0.5 * (ce(logits_a) + ce(logits_b)) + alpha * consistency


def rdrop_forward(model: nn.Module, x: Any, *, output: Any = None,
                  strategy: str = "batch", generator: torch.Generator | None = None
                  ) -> tuple[Tensor, Tensor]:
    """Two passes of ``model`` (in training mode) over ``x``, with two dropout masks.

    ``strategy``: ``"batch"`` (the paper's: the batch doubled, one pass, every example
    with masks of its own; BatchNorm then sees the doubled batch), ``"vmap"``
    (``torch.func.vmap`` over two samples: the network before the first dropout runs
    once, forward and backward; not with BatchNorm in training, whose running statistics
    vmap cannot update in place) or ``"loop"`` (two passes). Inputs and ``output`` as
    :func:`dropkit.mc_predict` takes them; gradients flow through both outputs. Every
    dropout site of the registry draws twice: module, functional and attention dropout.
    Refuses, before any pass: a model in eval, a model with nothing to drop, and
    ``"batch"`` where a site draws once per batch (DropConnect, LayerDrop: the two
    halves would share it). Raises if the two passes came out identical. ``generator``:
    the source of the passes' draws, as :func:`dropkit.mc_predict` takes it (default:
    torch's global generator).
    """
    from dropkit.inference.sampling.batch import check_batchable, check_uncoupled
    from dropkit.inference.sampling.failures import vmap_failures_named
    from dropkit.inference.sampling.strategies import sampler
    from dropkit.tools.sites import discover_cached

    if strategy not in RDROP_STRATEGIES:
        raise UsageError(f"rdrop_forward: expected `strategy` to be one of {RDROP_STRATEGIES}, got "
                         f"strategy={strategy!r}")
    if not model.training:
        raise UsageError("rdrop_forward: the model is in eval mode, where dropout does not "
                         "draw and the two passes would be equal; call model.train() first")
    sites = discover_cached(model, x)
    active = [s for s in sites if s.draws and all(g.training for _, g in s.gates)]
    if not active:
        raise UsageError("rdrop_forward: the model has no dropout that draws in training "
                         "mode (none present, or every rate is 0): the two passes would be "
                         "equal")
    if strategy == "batch":
        check_batchable("rdrop_forward", "draw two masks for", active)
        check_uncoupled("rdrop_forward", model, x, output)
    with vmap_failures_named("rdrop_forward", "draw two masks for", model, strategy), \
            drawing_from("rdrop_forward", generator, model_device(model, x)):
        out = sampler(strategy, sites)(model, x, 2, None, output)
    if torch.equal(out[0], out[1]):
        raise RuntimeError(
            "rdrop_forward: the two passes are identical although dropout sites with rates "
            "above 0 exist (" + ", ".join(s.describe() for s in active) + "); R-Drop's "
            "consistency term would be 0")
    return out[0], out[1]
