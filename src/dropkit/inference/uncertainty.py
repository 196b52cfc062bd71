"""Uncertainty and calibration measures for Monte Carlo samples.

Classification: samples of class probabilities, shape ``(T, ..., C)`` (T samples, C
classes); the Monte Carlo prediction is their mean over T. Regression: samples of
predictions ``(T, ...)`` with a model precision tau, as in Gal & Ghahramani 2016.

Beside them, from their own modules: calibration (ECE with equal-width or equal-mass
bins, classwise ECE, temperature scaling, calibrated NLL), detection of
out-of-distribution inputs or errors by a score (AUROC, AUPR, FPR at 95% TPR), and
selective prediction (risk-coverage, AURC, E-AURC). Every rate and error is a fraction.

Papers: Houlsby et al. 2011 (BALD: mutual information); Gal, Islam & Ghahramani 2017
(variation ratio); Guo et al. 2017 (ECE, reliability diagrams, temperature scaling);
Hendrycks & Gimpel 2017 (detection); Geifman & El-Yaniv 2017 (selective prediction);
Brier 1950.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dropkit.errors import UsageError
from dropkit.inference.calibration import (
    Calibration,
    TemperatureScaled,
    _check_targets,
    calibrated_nll,
    classwise_ece,
    ece,
    fit_temperature,
)
from dropkit.inference.detection import Detection, aupr, auroc, detection, fpr_at_tpr
from dropkit.inference.selective import (
    RiskCoverage,
    accuracy_at_coverage,
    aurc,
    e_aurc,
    risk_coverage,
)

__all__ = [
    "predictive_entropy",
    "expected_entropy",
    "mutual_information",
    "variation_ratio",
    "nll",
    "brier",
    "ece",
    "Calibration",
    "classwise_ece",
    "fit_temperature",
    "TemperatureScaled",
    "calibrated_nll",
    "auroc",
    "aupr",
    "fpr_at_tpr",
    "Detection",
    "detection",
    "risk_coverage",
    "RiskCoverage",
    "aurc",
    "e_aurc",
    "accuracy_at_coverage",
    "gaussian_predictive",
    "regression_log_likelihood",
    "rmse",
]


def _check_samples(fn: str, probs: Tensor) -> None:
    if not isinstance(probs, Tensor) or not probs.is_floating_point() or probs.dim() < 2:
        got = tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__
        raise UsageError(
            f"{fn}: expected float probability samples of shape (T, ..., C), got {got}"
        )


def _entropy(probs: Tensor) -> Tensor:
    return -(probs * torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))).sum(-1)


def predictive_entropy(probs: Tensor) -> Tensor:
    """H[E_t p_t]: entropy of the mean prediction; total uncertainty. Shape ``(...)``."""
    _check_samples("predictive_entropy", probs)
    return _entropy(probs.mean(0))


def expected_entropy(probs: Tensor) -> Tensor:
    """E_t H[p_t]: mean entropy of the samples; the data (aleatoric) part."""
    _check_samples("expected_entropy", probs)
    return _entropy(probs).mean(0)


def mutual_information(probs: Tensor) -> Tensor:
    """BALD: predictive entropy minus expected entropy; the model (epistemic) part, >= 0."""
    _check_samples("mutual_information", probs)
    return predictive_entropy(probs) - expected_entropy(probs)


def variation_ratio(probs: Tensor) -> Tensor:
    """1 - (share of samples that vote for the most voted class)."""
    _check_samples("variation_ratio", probs)
    votes = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).sum(0)
    return 1.0 - votes.max(-1).values.to(probs.dtype) / probs.shape[0]


def nll(probs: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of ``targets`` under mean probabilities ``(..., C)``."""
    _check_targets("nll", probs, targets)
    picked = probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return -torch.log(picked.clamp_min(torch.finfo(probs.dtype).tiny)).mean()


def brier(probs: Tensor, targets: Tensor) -> Tensor:
    """Mean over examples of the squared distance between probabilities and the one-hot target."""
    _check_targets("brier", probs, targets)
    onehot = torch.nn.functional.one_hot(targets, probs.shape[-1]).to(probs.dtype)
    return (probs - onehot).pow(2).sum(-1).mean()


def gaussian_predictive(samples: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """Predictive mean and variance of MC dropout regression (Gal & Ghahramani 2016, eq. 8).

    mean = E_t y_t; variance = 1/tau + E_t y_t^2 - mean^2, with model precision ``tau``.
    """
    if not tau > 0:
        raise UsageError(f"gaussian_predictive: expected `tau` > 0, got tau={tau!r}")
    mean = samples.mean(0)
    return mean, samples.var(0, unbiased=False) + 1.0 / tau


def regression_log_likelihood(samples: Tensor, targets: Tensor, tau: float) -> Tensor:
    """Mean test log-likelihood under the MC mixture of Gaussians N(y_t, 1/tau).

    log p(y) = logsumexp_t(-tau/2 (y - y_t)^2) - log T - log(2 pi)/2 + log(tau)/2,
    averaged over test points: the metric of Gal & Ghahramani 2016's UCI table.
    """
    if not tau > 0:
        raise UsageError(f"regression_log_likelihood: expected `tau` > 0, got tau={tau!r}")
    if samples.shape[1:] != targets.shape:
        raise UsageError(
            f"regression_log_likelihood: expected samples (T, *targets.shape), got "
            f"{tuple(samples.shape)} and {tuple(targets.shape)}"
        )
    t = samples.shape[0]
    log_terms = -0.5 * tau * (targets.unsqueeze(0) - samples).pow(2)
    ll = torch.logsumexp(log_terms, 0) - math.log(t) - 0.5 * math.log(2 * math.pi)
    return (ll + 0.5 * math.log(tau)).mean()


def rmse(samples: Tensor, targets: Tensor) -> Tensor:
    """Root mean squared error of the MC mean prediction."""
    return (samples.mean(0) - targets).pow(2).mean().sqrt()
