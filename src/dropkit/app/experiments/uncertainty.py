"""``dropkit uncertainty``: what Monte Carlo dropout knows that the deterministic net does not.

Run::

    dropkit uncertainty --dataset mnist5k --epochs 30 --samples 100 --out runs/uncertainty

Trains (or resumes) a network with dropout, then on the test set: a reliability diagram
and ECE for MC averaging vs the deterministic net (weight scaling); predictive entropy
and mutual information for test digits vs out-of-distribution inputs (rotated digits,
uniform noise) with the AUROC of telling them apart; and the test error of MC averaging
against the number of samples k next to weight scaling (Srivastava et al. 2014, Fig. 11).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dropkit import uncertainty as U
from dropkit.app.experiments.data import Dataset
from dropkit.app.experiments.engine import (
    MC_STRATEGY,
    RunOptions,
    TrainConfig,
    check_samples,
    load_final,
    train,
)
from dropkit.app.experiments.io import atomic_write_json, check_manifest
from dropkit.app.experiments.memory import FLOAT_BYTES, check_fits_memory
from dropkit.app.experiments.report import (
    mean_spread,
    plt,
    print_table,
    reliability_diagram,
    save_figure,
    write_report,
)
from dropkit.app.experiments.shift import rotated
from dropkit.errors import UsageError
from dropkit.inference.mc import mc_predict

__all__ = ["run_uncertainty", "error_vs_samples", "KS"]

KS = (1, 2, 5, 10, 20, 50, 100, 200)


def error_vs_samples(probs: torch.Tensor, y: torch.Tensor, ks=KS) -> dict[int, tuple[float, float]]:
    """Test error of the mean of k samples, averaged over the disjoint groups of k in T."""
    t = probs.shape[0]
    out = {}
    for k in sorted({*(k for k in ks if k <= t), t}):  # always up to all T samples
        errors = [
            (probs[g * k : (g + 1) * k].mean(0).argmax(-1) != y).double().mean().item()
            for g in range(t // k)
        ]
        out[k] = mean_spread(errors)
    return out


def _ood_inputs(data: Dataset, n: int, seed: int) -> dict[str, torch.Tensor]:
    x = data.x_test[:n]
    out = {}
    if data.image_shape is not None:
        out["rotated 90°"] = rotated(x, data.image_shape, 90)
    g = torch.Generator().manual_seed(seed)
    out["uniform noise"] = torch.rand(x.shape, generator=g) * x.max()
    return out


def run_uncertainty(
    options: RunOptions | None = None,
    *,
    samples: int = 100,
    seed: int = 0,
    dropout: float = 0.5,
    input_dropout: float = 0.2,
) -> dict[str, Any]:
    """Train one dropout network, then compare MC dropout with weight scaling: calibration,
    out-of-distribution detection and error against the number of samples.

    ``options``: as :func:`dropkit.app.experiments.compare.run_compare` (epochs default 30,
    folder runs/uncertainty).
    """
    options = options if options is not None else RunOptions()
    config, out, data = _open(options, samples, seed, dropout, input_dropout)
    options.log(f"dropkit uncertainty: {config.dataset}, {config.model}, {config.epochs} "
                f"epochs, T = {samples} -> {out}")
    train(config, out / "model", resume=True, progress=options.progress, data=data,
          log=options.log)
    net = load_final(config, data, out / "model", torch.Generator().manual_seed(seed + 1))
    measured = _measure(net.eval(), data, samples, seed)
    return _results(config, out, samples, measured, options.log)


def _open(options: RunOptions, samples: int, seed: int, dropout: float,
          input_dropout: float) -> tuple[TrainConfig, Path, Dataset]:
    """The run's configuration, folder and data, every check made before training."""
    if samples < 2:
        raise UsageError(f"uncertainty: expected `samples` to be an int >= 2, got "
                         f"samples={samples}", "samples")
    config, out, data = options.prepare(30, "runs/uncertainty", seed=seed, dropout=dropout,
                                        input_dropout=input_dropout)
    if data.task != "classification":
        raise UsageError(f"uncertainty: `dataset` must be a classification set, "
                         f"{config.dataset!r} is regression (see `dropkit reproduce "
                         "uci-boston`)", "dataset")
    check_samples(config, data, "uncertainty")
    # the samples' probabilities (T, N, C) at once, with their logits and a log beside them
    check_fits_memory("uncertainty", 3 * samples * len(data.x_test) * data.n_classes
                      * FLOAT_BYTES, f"keeping {samples:,} samples of the test set", "samples")
    check_manifest(out, "uncertainty", {**asdict(config), "samples": samples})
    return config, out, data


@dataclass
class _Measured:
    """What the trained network's predictions showed."""

    cal_det: Any  # weight scaling's calibration (dropkit.uncertainty.ece)
    cal_mc: Any  # MC averaging's
    scores: dict[str, tuple[torch.Tensor, torch.Tensor]]  # entropy and MI per input set
    curve: dict[int, tuple[float, float]]  # test error against samples k
    det_error: float
    metrics: dict[str, Any]


def _measure(net: nn.Module, data: Dataset, samples: int, seed: int) -> _Measured:
    """Weight scaling against MC averaging on the test set, and the uncertainty of test
    digits against out-of-distribution inputs (AUROC)."""
    x, y = data.x_test, data.y_test
    torch.manual_seed(seed)
    with torch.no_grad():
        det = net(x).softmax(-1)
    mc = mc_predict(net, x, samples, chunk_size=25, strategy=MC_STRATEGY).softmax(-1)  # (T, N, C)
    mc_mean = mc.mean(0)
    cal_det, cal_mc = U.ece(det, y), U.ece(mc_mean, y)
    scores = {"in-distribution": (U.predictive_entropy(mc), U.mutual_information(mc))}
    for name, x_ood in _ood_inputs(data, len(x), seed).items():
        p = mc_predict(net, x_ood, samples, chunk_size=25, strategy=MC_STRATEGY).softmax(-1)
        scores[name] = (U.predictive_entropy(p), U.mutual_information(p))
    curve = error_vs_samples(mc, y)
    det_error = (det.argmax(-1) != y).double().mean().item()
    metrics = {
        "ece_weight_scaling": cal_det.ece, "ece_mc": cal_mc.ece,
        "nll_weight_scaling": U.nll(det, y).item(), "nll_mc": U.nll(mc_mean, y).item(),
        "error_weight_scaling": det_error,
        "error_mc": (mc_mean.argmax(-1) != y).double().mean().item(),
        "auroc": _auroc(scores),
        "error_vs_k": {str(k): {"mean": m, "sd": s} for k, (m, s) in curve.items()},
    }
    return _Measured(cal_det, cal_mc, scores, curve, det_error, metrics)


def _auroc(scores: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, dict[str, float]]:
    """AUROC of telling each out-of-distribution set from the test digits, by entropy and
    by mutual information (:func:`dropkit.uncertainty.detection`)."""
    ind_ent, ind_mi = scores["in-distribution"]
    return {name: {"entropy": U.detection(ind_ent, ent).auroc,
                   "mutual information": U.detection(ind_mi, mi).auroc}
            for name, (ent, mi) in scores.items() if name != "in-distribution"}


def _results(config: TrainConfig, out: Path, samples: int, m: _Measured,
             log: Callable[[str], None]) -> dict[str, Any]:
    """The tables, figures, reading, results.json and report of what was measured."""
    metrics, curve, det_error = m.metrics, m.curve, m.det_error
    figures = [
        (reliability_diagram({"weight scaling": m.cal_det, "MC dropout": m.cal_mc},
                             out / "reliability.png"), "Reliability diagram"),
        (_histograms(m.scores, out), "Uncertainty of test digits vs out-of-distribution inputs"),
        (_error_curve(curve, det_error, out), "Test error against the number of MC samples k"),
    ]
    rows = [
        ["weight scaling (deterministic)", f"{100 * det_error:.2f}", f"{m.cal_det.ece:.4f}",
         f"{metrics['nll_weight_scaling']:.4f}"],
        [f"MC dropout, T = {samples}", f"{100 * metrics['error_mc']:.2f}",
         f"{m.cal_mc.ece:.4f}", f"{metrics['nll_mc']:.4f}"],
    ]
    header = ["prediction", "test error %", "ECE", "NLL"]
    auroc = metrics["auroc"]
    ood_rows = [
        [n, f"{a['entropy']:.3f}", f"{a['mutual information']:.3f}"] for n, a in auroc.items()
    ]
    ood_header = ["out-of-distribution set", "AUROC (entropy)", "AUROC (mutual information)"]
    print_table(header, rows, log)
    log("")
    print_table(ood_header, ood_rows, log)
    reading = _reading(samples, m)
    settings = {**asdict(config), "samples": samples}
    payload = {"settings": settings, "metrics": metrics, "reading": reading}
    atomic_write_json(out / "results.json", payload)
    report = write_report(out / "report.html",
                          f"dropkit uncertainty: MC dropout on {config.dataset}", reading,
                          [(header, rows), (ood_header, ood_rows)], figures, settings)
    for line in reading:
        log(line)
    log(f"report: {report}")
    return payload


def _reading(samples: int, m: _Measured) -> list[str]:
    curve, det_error = m.curve, m.det_error
    k_close = next((k for k, (mean, _) in curve.items() if mean <= det_error), None)
    return [
        f"MC averaging of {samples} samples gave ECE {m.cal_mc.ece:.4f} against "
        f"{m.cal_det.ece:.4f} for weight scaling (lower is better calibrated).",
        "AUROC of flagging out-of-distribution inputs by their uncertainty (0.5 is chance): "
        + "; ".join(f"{n}: {a['entropy']:.3f} (entropy), {a['mutual information']:.3f} (MI)"
                    for n, a in m.metrics["auroc"].items()) + ".",
        (f"MC averaging matched weight scaling's test error ({100 * det_error:.2f}%) from "
         f"k = {k_close} samples" if k_close else
         f"MC averaging did not reach weight scaling's test error ({100 * det_error:.2f}%) "
         f"within k = {max(curve)} samples")
        + "; Srivastava et al. 2014 (Fig. 11) report a match at about k = 50.",
    ]


def _histograms(scores: dict[str, tuple[torch.Tensor, torch.Tensor]], out: Path) -> Path:
    fig, axes = plt().subplots(1, 2, figsize=(10, 3.8))
    for i, title in enumerate(("predictive entropy", "mutual information")):
        for name, values in scores.items():
            axes[i].hist(values[i].numpy(), bins=40, alpha=0.5, density=True, label=name)
        axes[i].set_title(title)
        axes[i].legend(fontsize=8)
    return save_figure(fig, out / "uncertainty_histograms.png")


def _error_curve(curve: dict[int, tuple[float, float]], det_error: float, out: Path) -> Path:
    fig, ax = plt().subplots(figsize=(6, 4))
    ks = list(curve)
    ax.errorbar(ks, [100 * m for m, _ in curve.values()], [100 * s for _, s in curve.values()],
                marker="o", capsize=3, label="MC averaging of k samples")
    ax.axhline(100 * det_error, color="k", ls="--", label="weight scaling")
    ax.set_xscale("log")
    ax.set_xlabel("number of samples k")
    ax.set_ylabel("test error %")
    ax.set_title("cf. Srivastava et al. 2014, Fig. 11")
    ax.legend()
    return save_figure(fig, out / "error_vs_samples.png")
