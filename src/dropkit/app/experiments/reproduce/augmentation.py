"""The ``augmentation`` claim: data augmentation and dropout are complementary, so both
together beat either alone (direction)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dropkit.app.experiments.engine import TrainConfig, dataset_for
from dropkit.app.experiments.reproduce.registry import ClaimResult, claim
from dropkit.app.experiments.reproduce.runs import bar, finals, paired_difference, paired_effect
from dropkit.app.experiments.reproduce.sources import SIMARD, SRIVASTAVA
from dropkit.app.experiments.reproduce.stats import Effect, judge_parts, pm


@claim("augmentation",
       "augmentation and dropout are complementary: both beat either alone (direction)",
       fast=True)
def augmentation(quick: bool, out: Path) -> ClaimResult:
    epochs, hidden, seeds = (4, 128, 2) if quick else (30, 1024, 3)
    base: dict[str, Any] = dict(epochs=epochs, hidden=hidden, eval_every=epochs)
    drop: dict[str, Any] = dict(dropout=0.5, input_dropout=0.2)
    none: dict[str, Any] = dict(dropout=0.0, input_dropout=0.0)
    configs = {"both": TrainConfig(**drop, augment="shift:2", **base),
               "dropout": TrainConfig(**drop, **base),
               "augment": TrainConfig(**none, augment="shift:2", **base),
               "none": TrainConfig(**none, **base)}
    data = dataset_for(configs["none"])
    res = finals(configs, seeds, out, data)
    texts: list[str] = []
    parts: dict[str, Effect] = {}
    paired: dict[str, dict[str, float]] = {}
    for alone in ("dropout", "augment"):
        paired[alone], text = paired_difference(configs, "both", alone, seeds, out, res, data)
        texts.append(f"vs {alone}: {text}")
        parts[f"test error, {alone} - both"] = paired_effect(paired[alone])
    finding, why = judge_parts(parts)
    return ClaimResult(
        setting=(f"MNIST-5k, MLP 784-{hidden}-{hidden}-10, {epochs} epochs, {seeds} seeds; "
                 "dropout 0.2 input / 0.5 hidden, augmentation: each training digit moved "
                 "by up to 2 pixels along each axis (fresh every batch), both, or neither"),
        dropkit="; ".join(f"{k}: test error {pm(v['test_error'])}" for k, v in res.items()),
        published=(f"{SRIVASTAVA}, Sec. 6.1, use dropout on top of data augmentation for "
                   f"their best image results; {SIMARD}, Table 1: small distortions of the MNIST "
                   "digits lower the error of the same nets. Complementary: a direction only"),
        verdict=finding.verdict,
        why=why,
        power=finding.power,
        numbers={**res, "paired": paired},
        figure=bar(res, out, "augmentation"),
        paired="; ".join(texts),
    )
