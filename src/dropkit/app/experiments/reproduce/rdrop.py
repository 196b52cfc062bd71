"""The ``r-drop`` claim: R-Drop's consistency term on top of dropout lowers the test error
(Liang et al. 2021; a direction at most on MNIST-5k)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dropkit.app.experiments.engine import TrainConfig, dataset_for
from dropkit.app.experiments.reproduce.registry import ClaimResult, claim
from dropkit.app.experiments.reproduce.runs import (
    bar,
    compared,
    finals,
    paired_difference,
    paired_effect,
)
from dropkit.app.experiments.reproduce.sources import LIANG
from dropkit.app.experiments.reproduce.stats import judge, pm

ALPHA = 1.0  # the consistency weight (mean-reduced KL: dropkit.rdrop_loss)


@claim("r-drop",
       "R-Drop (two dropout passes, their symmetric KL in the loss) lowers a dropout "
       "network's test error (Liang et al. 2021, direction)", fast=True)
def r_drop(quick: bool, out: Path) -> ClaimResult:
    epochs, hidden, seeds = (2, 64, 2) if quick else (30, 512, 3)
    base: dict[str, Any] = dict(epochs=epochs, hidden=hidden, eval_every=epochs, dropout=0.5,
                                input_dropout=0.2)
    configs = {"r-drop": TrainConfig(rdrop=ALPHA, **base), "dropout": TrainConfig(**base)}
    data = dataset_for(configs["dropout"])
    res = finals(configs, seeds, out, data)
    paired, text = paired_difference(configs, "r-drop", "dropout", seeds, out, res, data)
    effect = paired_effect(paired)
    finding = judge(effect)
    return ClaimResult(
        setting=(f"MNIST-5k, MLP 784-{hidden}-{hidden}-10, dropout 0.2 input / 0.5 hidden, "
                 f"{epochs} epochs, {seeds} seeds; R-Drop: the doubled batch, loss = mean "
                 f"cross-entropy of both passes + {ALPHA} x their symmetric KL (batch mean)"),
        dropkit="; ".join(f"{k}: test error {pm(v['test_error'])}" for k, v in res.items()),
        published=(f"{LIANG}, abstract: R-Drop is \"universally effective\" over 18 "
                   "data sets of translation, summarization, language understanding, "
                   "language modelling and image classification, e.g. 30.91 BLEU on WMT14 "
                   "En-De and 43.95 on En-Fr with a vanilla Transformer; no MNIST result, "
                   "and its largest gains are on translation and fine-tuning: a direction "
                   "at most"),
        verdict=finding.verdict,
        why=compared("test error", "r-drop", "dropout", effect),
        power=finding.power,
        numbers={**res, "paired": paired},
        figure=bar(res, out, "r-drop"),
        paired=text,
    )
