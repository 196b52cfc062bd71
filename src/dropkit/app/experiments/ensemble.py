"""``dropkit ensemble``: a deep ensemble beside one dropout network.

Run::

    dropkit ensemble --members 5 --epochs 20 --out runs/ensemble

Trains M networks without dropout from seeds 0..M-1 (Lakshminarayanan et al. 2017,
"Simple and Scalable Predictive Uncertainty Estimation using Deep Ensembles": their
averaged probabilities are one predictor) and one network with dropout, each in its own
resumable folder. On the test set: error, NLL, Brier score and ECE of the ensemble, of
the dropout network with weight scaling (one pass) and with Monte Carlo averaging of M
passes (the ensemble's inference cost), with their costs (training seconds, parameters,
forward passes) and a reliability diagram.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dropkit import uncertainty as U
from dropkit.app.experiments.data import Dataset
from dropkit.app.experiments.engine import (
    MC_STRATEGY,
    RunOptions,
    TrainConfig,
    check_samples,
    load_final,
    predict,
    train_seeds,
)
from dropkit.app.experiments.io import atomic_write_json, check_manifest
from dropkit.app.experiments.report import print_table, reliability_diagram, write_report
from dropkit.errors import UsageError
from dropkit.inference.mc import mc_predict

__all__ = ["run_ensemble", "ensemble_probs", "scores", "predictions", "train_all"]


def train_all(configs: dict[str, TrainConfig], data: Dataset, out: Path, members: int,
              options: RunOptions) -> dict[str, list[list[dict[str, Any]]]]:
    """Train (or resume) the ensemble's members, seeds 0..members-1, and the dropout
    network, seed 0, each in its own folder under ``out/runs``; their histories."""
    histories = train_seeds({"member": configs["member"]}, members, out, data=data,
                            progress=options.progress, log=options.log)
    histories.update(train_seeds({"dropout": configs["dropout"]}, 1, out, data=data,
                                 progress=options.progress, log=options.log))
    return histories


def ensemble_probs(models: list[nn.Module], x: Tensor) -> Tensor:
    """The ensemble's prediction: the mean of its members' class probabilities."""
    return torch.stack([predict(m, x).softmax(-1) for m in models]).mean(0)


def scores(probs: Tensor, y: Tensor) -> dict[str, float]:
    """Test error, NLL, Brier score and ECE of class probabilities ``(N, C)``."""
    return {"error": (probs.argmax(-1) != y).double().mean().item(),
            "nll": U.nll(probs, y).item(), "brier": U.brier(probs, y).item(),
            "ece": U.ece(probs, y).ece}


def predictions(configs: dict[str, TrainConfig], data: Dataset, out: Path, members: int
                ) -> dict[str, Tensor]:
    """Test-set class probabilities ``(N, C)`` of the trained ensemble (``member``
    configuration, seeds 0..members-1) and of the ``dropout`` network (seed 0), with
    weight scaling and with Monte Carlo averaging of ``members`` passes."""
    x = data.x_test
    nets = [load_final(configs["member"], data, out / "runs" / f"member-seed{k}")
            for k in range(members)]
    net = load_final(configs["dropout"], data, out / "runs" / "dropout-seed0",
                     torch.Generator().manual_seed(configs["member"].seed + 1))
    return {"ensemble": ensemble_probs(nets, x),
            "dropout, weight scaling": predict(net, x).softmax(-1),
            f"dropout, MC {members} passes": mc_predict(net.eval(), x, members,
                                                        chunk_size=25, strategy=MC_STRATEGY
                                                        ).softmax(-1).mean(0)}


def run_ensemble(options: RunOptions | None = None, *, members: int = 5, dropout: float = 0.5,
                 input_dropout: float = 0.2) -> dict[str, Any]:
    """Train the ensemble and the dropout network (resumable), then compare them.

    ``options``: as :func:`dropkit.app.experiments.compare.run_compare` (epochs default 20,
    folder runs/ensemble). Returns the saved payload (also ``results.json``).
    """
    options = options if options is not None else RunOptions()
    log = options.log
    if isinstance(members, bool) or not isinstance(members, int) or members < 2:
        raise UsageError(f"ensemble: expected `members` to be an int >= 2, got "
                         f"members={members!r}", "members")
    # the dropout network's configuration, checked before the members' folder and data
    options.config(20, dropout=dropout, input_dropout=input_dropout).validate()
    base, out, data = options.prepare(20, "runs/ensemble", dropout=0.0, input_dropout=0.0)
    if data.task != "classification":
        raise UsageError(f"ensemble: `dataset` must be a classification set, "
                         f"{base.dataset!r} is regression", "dataset")
    configs = {"member": base,
               "dropout": replace(base, dropout=dropout, input_dropout=input_dropout)}
    check_samples(configs["dropout"], data, "ensemble")
    check_manifest(out, "ensemble", {**asdict(base), "members": members, "dropout": dropout,
                                     "input_dropout": input_dropout})
    log(f"dropkit ensemble: {base.dataset}, {base.model}, {members} members vs one dropout "
        f"network ({input_dropout:g} in / {dropout:g} hidden), {base.epochs} epochs -> {out}")
    histories = train_all(configs, data, out, members, options)
    y = data.y_test
    probs = predictions(configs, data, out, members)
    params = sum(p.numel() for p in load_final(base, data, out / "runs" / "member-seed0")
                 .parameters())
    seconds = {k: sum(r["seconds"] for h in v for r in h) for k, v in histories.items()}
    costs = {"ensemble": (seconds["member"], members * params, members),
             "dropout, weight scaling": (seconds["dropout"], params, 1),
             f"dropout, MC {members} passes": (seconds["dropout"], params, members)}
    results = {k: {**scores(p, y), "train_seconds": costs[k][0], "parameters": costs[k][1],
                   "forward_passes": costs[k][2]} for k, p in probs.items()}
    header = ["predictor", "error %", "NLL", "Brier", "ECE", "train s", "params", "passes"]
    rows = [[k, f"{100 * r['error']:.2f}", f"{r['nll']:.4f}", f"{r['brier']:.4f}",
             f"{r['ece']:.4f}", f"{r['train_seconds']:.0f}", f"{r['parameters']:,}",
             str(r["forward_passes"])] for k, r in results.items()]
    print_table(header, rows, log)
    best = min(results, key=lambda k: results[k]["nll"])
    reading = [f"Lowest NLL: {best}. The ensemble trained {members} networks "
               f"({seconds['member']:.0f} s) against one dropout network "
               f"({seconds['dropout']:.0f} s)."]
    figure = reliability_diagram({k: U.ece(p, y) for k, p in probs.items()},
                                 out / "reliability.png")
    settings = {**asdict(base), "members": members, "dropout": dropout,
                "input_dropout": input_dropout}
    payload = {"settings": settings, "results": results, "reading": reading}
    atomic_write_json(out / "results.json", payload)
    report = write_report(out / "report.html", f"dropkit ensemble on {base.dataset}", reading,
                          [(header, rows)], [(figure, "Reliability diagram")], settings)
    log(reading[0])
    log(f"report: {report}")
    return payload

