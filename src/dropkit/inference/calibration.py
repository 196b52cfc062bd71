"""Calibration: whether a network's confidence matches how often it is right, and the
one-parameter fix, temperature scaling.

Every error here is a fraction in [0, 1] (0.05 means 5 points), never a percentage.
Papers: Guo et al. 2017 (ECE, reliability diagrams, temperature scaling); Nixon et al.
2019 (equal-mass "adaptive" bins); Kull et al. 2019 (classwise ECE); Ashukha et al. 2020
(compare NLL after temperature scaling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dropkit._checks import check_int
from dropkit.errors import UsageError

__all__ = ["Calibration", "ece", "classwise_ece", "fit_temperature", "calibrated_nll",
           "TemperatureScaled", "BINNINGS"]

BINNINGS = ("width", "mass")


def _check_targets(fn: str, probs: Tensor, targets: Tensor) -> None:
    if probs.dim() < 1 or targets.shape != probs.shape[:-1]:
        raise UsageError(
            f"{fn}: expected mean probabilities (..., C) and integer targets (...), got "
            f"{tuple(probs.shape)} and {tuple(targets.shape)}"
        )


@dataclass(frozen=True)
class Calibration:
    """ECE and the per-bin data of a reliability diagram."""

    ece: float  # a fraction in [0, 1]
    bin_edges: Tensor  # (n_bins + 1,)
    confidence: Tensor  # (n_bins,) mean confidence per bin (NaN where empty)
    accuracy: Tensor  # (n_bins,) accuracy per bin (NaN where empty)
    count: Tensor  # (n_bins,) examples per bin


def _bins(conf: Tensor, n_bins: int, binning: str) -> tuple[Tensor, Tensor]:
    """(bin of each confidence, edges). ``width``: equal-width bins on [0, 1], an edge
    value to the bin above, 1.0 to the last; ``mass``: bins of equal count (sizes differ
    by at most one) in order of confidence, edges at the bins' lowest confidences."""
    if binning == "width":
        edges = torch.linspace(0, 1, n_bins + 1, dtype=conf.dtype, device=conf.device)
        return torch.bucketize(conf, edges[1:-1], right=True), edges
    n = len(conf)
    order = torch.argsort(conf, stable=True)
    index = torch.empty_like(order)
    index[order] = torch.arange(n, device=conf.device) * n_bins // n
    first = [(b * n + n_bins - 1) // n_bins for b in range(n_bins)]  # each bin's first rank
    lows = [conf[order][i] if i < n else conf.new_tensor(1.0) for i in first]
    return index, torch.stack([*lows, conf.new_tensor(1.0)])


def _calibration(conf: Tensor, correct: Tensor, n_bins: int, binning: str) -> Calibration:
    index, edges = _bins(conf, n_bins, binning)
    count = torch.bincount(index, minlength=n_bins).to(conf.dtype)
    conf_sum = conf.new_zeros(n_bins).index_add_(0, index, conf)
    acc_sum = conf.new_zeros(n_bins).index_add_(0, index, correct)
    mean_conf, accuracy = conf_sum / count, acc_sum / count  # NaN where a bin is empty
    gap = torch.where(count > 0, (acc_sum - conf_sum).abs(), torch.zeros_like(count))
    return Calibration(float(gap.sum() / conf.numel()), edges, mean_conf, accuracy, count)


def _check_bins(fn: str, n_bins: int, binning: str) -> None:
    check_int(fn, n_bins, "n_bins", 1)
    if binning not in BINNINGS:
        raise UsageError(f"{fn}: expected `binning` to be one of {BINNINGS}, got "
                         f"binning={binning!r}")


def ece(probs: Tensor, targets: Tensor, n_bins: int = 15, binning: str = "width") -> Calibration:
    """Expected calibration error of the top-class confidence (Guo et al. 2017): the sum
    over bins of (bin size / n) x ``|accuracy - mean confidence|``, a fraction.

    ``binning``: ``"width"``, ``n_bins`` equal-width bins on [0, 1] (Guo et al.; a
    confidence on an edge goes to the bin above it, 1.0 to the last), or ``"mass"``,
    bins of equal count (the adaptive ECE of Nixon et al. 2019).
    """
    _check_targets("ece", probs, targets)
    _check_bins("ece", n_bins, binning)
    conf, pred = probs.reshape(-1, probs.shape[-1]).max(-1)
    correct = (pred == targets.reshape(-1)).to(conf.dtype)
    return _calibration(conf, correct, n_bins, binning)


def classwise_ece(probs: Tensor, targets: Tensor, n_bins: int = 15,
                  binning: str = "width") -> float:
    """Classwise ECE (Kull et al. 2019): the mean over classes k of the ECE of the
    probability of k against whether the target is k, a fraction."""
    _check_targets("classwise_ece", probs, targets)
    _check_bins("classwise_ece", n_bins, binning)
    flat = probs.reshape(-1, probs.shape[-1])
    hits = torch.nn.functional.one_hot(targets.reshape(-1), flat.shape[-1]).to(flat.dtype)
    return sum(_calibration(flat[:, k], hits[:, k], n_bins, binning).ece
               for k in range(flat.shape[-1])) / flat.shape[-1]


def _check_logits(fn: str, logits: Tensor, targets: Tensor) -> None:
    _check_targets(fn, logits, targets)
    if not bool(torch.isfinite(logits).all()):
        raise UsageError(f"{fn}: expected finite `logits`, got NaN or infinity")


def fit_temperature(logits: Tensor, targets: Tensor, *, max_iter: int = 100) -> float:
    """The temperature T > 0 that minimises the NLL of ``softmax(logits / T)`` on
    ``targets`` (a validation split; Guo et al. 2017). Apply it as ``logits / T``: T > 1
    softens an overconfident network, T < 1 sharpens an underconfident one; the
    predicted classes never change."""
    _check_logits("fit_temperature", logits, targets)
    z, y = logits.detach().double().reshape(-1, logits.shape[-1]), targets.reshape(-1)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def calibrated_nll(val_logits: Tensor, val_targets: Tensor, logits: Tensor,
                   targets: Tensor) -> float:
    """NLL of ``targets`` under ``softmax(logits / T)``, with T fitted on the validation
    logits (:func:`fit_temperature`): the NLL to compare methods by (Ashukha et al. 2020)."""
    _check_logits("calibrated_nll", logits, targets)
    t = fit_temperature(val_logits, val_targets)
    flat = logits.detach().double().reshape(-1, logits.shape[-1])
    return float(torch.nn.functional.cross_entropy(flat / t, targets.reshape(-1)))


class TemperatureScaled(nn.Module):
    """``model`` with its logits divided by ``temperature`` (from :func:`fit_temperature`):
    the calibrated network to predict, sample or export with. Its predicted classes are
    the model's."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or \
                not 0 < temperature < math.inf:
            raise UsageError(f"TemperatureScaled: expected `temperature` to be a finite "
                             f"number > 0, got temperature={temperature!r}")
        self.model = model
        self.temperature = float(temperature)

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.model(*args, **kwargs) / self.temperature
