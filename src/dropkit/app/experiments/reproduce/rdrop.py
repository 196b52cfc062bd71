"""The ``r-drop`` claim: R-Drop's consistency term on top of dropout lowers the test error
(Liang et al. 2021; a direction at most on MNIST-5k)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dropkit.app.experiments.engine import TrainConfig, dataset_for
from dropkit.app.experiments.reproduce.registry import ClaimResult, claim
from dropkit.app.experiments.reproduce.runs import two_way
from dropkit.app.experiments.reproduce.sources import LIANG

ALPHA = 1.0  # the consistency weight (mean-reduced KL: dropkit.rdrop_loss)


@claim("r-drop",
       "R-Drop (two dropout passes, their symmetric KL in the loss) lowers a dropout "
       "network's test error (Liang et al. 2021, direction)", fast=True)
def r_drop(quick: bool, out: Path) -> ClaimResult:
    epochs, hidden, seeds = (2, 64, 2) if quick else (30, 512, 3)
    base: dict[str, Any] = dict(epochs=epochs, hidden=hidden, eval_every=epochs, dropout=0.5,
                                input_dropout=0.2)
    configs = {"r-drop": TrainConfig(rdrop=ALPHA, **base), "dropout": TrainConfig(**base)}
    return two_way(
        "r-drop", "r-drop", "dropout", configs, seeds,
        f"MNIST-5k, MLP 784-{hidden}-{hidden}-10, dropout 0.2 input / 0.5 hidden, {epochs} "
        f"epochs, {seeds} seeds; R-Drop: the doubled batch, loss = mean cross-entropy of "
        f"both passes + {ALPHA} x their symmetric KL (batch mean)",
        f"{LIANG}, abstract: R-Drop is \"universally effective\" over 18 data sets of "
        "translation, summarization, language understanding, language modelling and image "
        "classification, e.g. 30.91 BLEU on WMT14 En-De and 43.95 on En-Fr with a vanilla "
        "Transformer; no MNIST result, and its largest gains are on translation and "
        "fine-tuning: a direction at most",
        quick, out, dataset_for(configs["dropout"]),
    )
