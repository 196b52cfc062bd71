"""Telling two kinds of input apart by an uncertainty score: out-of-distribution inputs
from in-distribution ones, or a network's errors from its correct predictions.

A score is higher for the input that should be flagged (an uncertainty: predictive
entropy, mutual information, 1 - max probability); ``positive`` marks the inputs that
should be flagged (out of distribution, or misclassified). Ties between a positive and a
negative count one half, as in the Mann-Whitney statistic. Each measure agrees with
scikit-learn's (``roc_auc_score``, ``average_precision_score``, ``roc_curve``), without
depending on it. Papers: Hendrycks & Gimpel 2017 (AUROC, AUPR in and out, the max-softmax
baseline); FPR at 95% TPR as in Liang et al. 2018.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dropkit.errors import UsageError, UsageTypeError

__all__ = ["auroc", "aupr", "fpr_at_tpr", "Detection", "detection"]


def _check(fn: str, scores: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(scores, Tensor) or not isinstance(positive, Tensor):
        raise UsageTypeError(f"{fn}: expected tensors `scores` and `positive`, got "
                             f"{type(scores).__name__} and {type(positive).__name__}")
    if scores.shape != positive.shape or scores.dim() != 1:
        raise UsageError(f"{fn}: expected `scores` and `positive` of one shape (N,), got "
                         f"{tuple(scores.shape)} and {tuple(positive.shape)}")
    flags = positive.bool()
    if positive.dtype != torch.bool and not bool(((positive == 0) | (positive == 1)).all()):
        raise UsageError(f"{fn}: expected `positive` to hold 0/1 or booleans")
    n_pos = int(flags.sum())
    if n_pos == 0 or n_pos == len(flags):
        raise UsageError(f"{fn}: expected both positive and negative examples, got "
                         f"{n_pos} positive of {len(flags)}")
    if not bool(torch.isfinite(scores).all()):
        raise UsageError(f"{fn}: expected finite `scores`, got NaN or infinity")
    return scores.double(), flags


def _by_threshold(scores: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    """Cumulative (true positives, false positives) at each distinct score, highest
    first: flagging every input whose score is at least that one."""
    order = torch.argsort(scores, descending=True, stable=True)
    s, p = scores[order], positive[order].double()
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # the last position of each run of equal scores
    tp = p.cumsum(0)[last]
    fp = (1 - p).cumsum(0)[last]
    return tp, fp


def auroc(scores: Tensor, positive: Tensor) -> float:
    """Area under the ROC curve of flagging ``positive`` inputs by ``scores`` (N,): the
    chance that a random positive scores above a random negative (ties count 1/2).
    0.5 is chance, 1 perfect."""
    s, flags = _check("auroc", scores, positive)
    tp, fp = _by_threshold(s, flags)
    tpr = torch.cat([tp.new_zeros(1), tp / tp[-1]])
    fpr = torch.cat([fp.new_zeros(1), fp / fp[-1]])
    return float(torch.trapezoid(tpr, fpr))


def aupr(scores: Tensor, positive: Tensor) -> float:
    """Area under the precision-recall curve of flagging ``positive`` inputs, as average
    precision: the sum over thresholds of (recall step) x precision (scikit-learn's
    ``average_precision_score``). Chance is the share of positives. "AUPR-out" flags the
    out-of-distribution inputs by uncertainty; "AUPR-in" is ``aupr(-scores, ~positive)``."""
    s, flags = _check("aupr", scores, positive)
    tp, fp = _by_threshold(s, flags)
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    steps = torch.diff(torch.cat([recall.new_zeros(1), recall]))
    return float((steps * precision).sum())


def fpr_at_tpr(scores: Tensor, positive: Tensor, tpr: float = 0.95) -> float:
    """The false-positive rate at the highest threshold that flags at least ``tpr`` of the
    positives (FPR95 at the default): the share of negatives flagged with them."""
    s, flags = _check("fpr_at_tpr", scores, positive)
    if not 0 < tpr <= 1:
        raise UsageError(f"fpr_at_tpr: expected `tpr` in (0, 1], got tpr={tpr!r}")
    tp, fp = _by_threshold(s, flags)
    reached = torch.nonzero(tp / tp[-1] >= tpr - 1e-12)[0, 0]
    return float(fp[reached] / fp[-1])


@dataclass(frozen=True)
class Detection:
    """How well a score flags one set of inputs against another (each a fraction)."""

    auroc: float
    aupr_in: float  # average precision of finding the in-distribution inputs
    aupr_out: float  # average precision of finding the flagged (out) inputs
    fpr95: float  # share of in-distribution inputs flagged at 95% of the out ones found


def detection(score_in: Tensor, score_out: Tensor) -> Detection:
    """Every measure of flagging the inputs of ``score_out`` (out of distribution, or
    errors) against those of ``score_in``, by a score higher for the flagged ones."""
    if not isinstance(score_in, Tensor) or not isinstance(score_out, Tensor):
        raise UsageTypeError("detection: expected tensors `score_in` and `score_out`")
    scores = torch.cat([score_in.reshape(-1), score_out.reshape(-1)])
    positive = torch.cat([torch.zeros(score_in.numel(), dtype=torch.bool),
                          torch.ones(score_out.numel(), dtype=torch.bool)])
    return Detection(auroc(scores, positive), aupr(-scores, ~positive),
                     aupr(scores, positive), fpr_at_tpr(scores, positive))
