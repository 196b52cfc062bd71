"""The ``spatial`` claim: spatial vs element dropout in a CNN (Tompson et al. 2015, direction)."""

from __future__ import annotations

from pathlib import Path

from dropkit.app.experiments.data import load_dataset
from dropkit.app.experiments.reproduce.registry import ClaimResult, claim
from dropkit.app.experiments.reproduce.runs import cnn_configs, two_way
from dropkit.app.experiments.reproduce.sources import TOMPSON


@claim("spatial",
       "spatial vs element dropout in a CNN (Tompson et al. 2015, direction)",
       fast=False)
def spatial(quick: bool, out: Path) -> ClaimResult:
    # 15 seeds: the power step (3 left it inconclusive; the measured 0.50 points needed 12)
    configs, epochs, seeds = cnn_configs(quick, {"spatial": "cnn", "element": "cnn-element"},
                                         full_seeds=15, dropout=0.0, input_dropout=0.3)
    data = load_dataset("mnist5k")
    return two_way(
        "spatial", "spatial", "element", configs, seeds,
        f"MNIST-5k, the CNN, p = 0.3 after the last conv block, whole feature maps "
        f"(Dropout2d) vs single activations, no other dropout, {epochs} epochs, {seeds} seeds",
        f"{TOMPSON}, Sec. 3.2 (FLIC pose estimation): spatial dropout generalizes better "
        "than element dropout in CNNs, where neighbouring activations are correlated; a "
        "direction only",
        quick, out, data,
    )
