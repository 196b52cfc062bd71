"""The ``mnist5k-gap`` claim: dropout lowers test error and the train/test gap on MNIST-5k."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dropkit.app.experiments.engine import TrainConfig
from dropkit.app.experiments.reproduce.registry import ClaimResult, claim
from dropkit.app.experiments.reproduce.runs import bar, finals, paired_difference, paired_effect
from dropkit.app.experiments.reproduce.sources import SRIVASTAVA
from dropkit.app.experiments.reproduce.stats import judge_parts, pm, seed_effect


@claim("mnist5k-gap", "dropout lowers test error and the train/test gap on MNIST-5k", fast=True)
def mnist5k_gap(quick: bool, out: Path) -> ClaimResult:
    epochs, hidden, seeds = (15, 256, 3) if quick else (60, 1024, 3)
    base: dict[str, Any] = dict(epochs=epochs, hidden=hidden, eval_every=epochs)
    configs = {"none": TrainConfig(dropout=0.0, input_dropout=0.0, **base),
               "dropout": TrainConfig(dropout=0.5, input_dropout=0.2, **base)}
    res = finals(configs, seeds, out)
    paired, paired_text = paired_difference(configs, "dropout", "none", seeds, out, res)
    finding, why = judge_parts({"test error, none - dropout": paired_effect(paired),
                                "train/test gap, none - dropout": seed_effect("dropout", "none",
                                                                              res, "gap")})
    return ClaimResult(
        setting=(
            f"MNIST-5k (4,000 train / 1,000 test), MLP 784-{hidden}-{hidden}-10, SGD momentum "
            f"0.9, {epochs} epochs, {seeds} seeds; dropout 0.2 input / 0.5 hidden"),
        dropkit=(
            f"test error {pm(res['none']['test_error'])} without, "
            f"{pm(res['dropout']['test_error'])} with; gap {pm(res['none']['gap'])} without, "
            f"{pm(res['dropout']['gap'])} with"),
        published=(
            f"{SRIVASTAVA}, Table 2 (full MNIST, 60,000 training examples): 1.60% for a "
            "standard net (logistic units, 2 layers of 800, Simard et al. 2003's), 1.35% with "
            "dropout and logistic units, 1.25% with dropout and ReLUs (both 3 layers of "
            "1024)"),
        verdict=finding.verdict,
        why=why + " (the absolute errors differ from the paper's: 4,000 examples, not 60,000)",
        power=finding.power,
        numbers={**res, "paired": paired},
        figure=bar(res, out, "MNIST-5k: test error"),
        paired=paired_text,
    )
