"""The ``dropconnect`` claim: DropConnect vs dropout on MNIST-5k (Wan et al. 2013, direction)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dropkit.app.experiments.engine import TrainConfig
from dropkit.app.experiments.reproduce.registry import ClaimResult, claim
from dropkit.app.experiments.reproduce.runs import two_way
from dropkit.app.experiments.reproduce.sources import WAN


@claim("dropconnect", "DropConnect vs dropout on MNIST-5k (Wan et al. 2013, direction)", fast=False)
def dropconnect(quick: bool, out: Path) -> ClaimResult:
    epochs, hidden, seeds = (10, 256, 2) if quick else (60, 800, 3)
    base: dict[str, Any] = dict(epochs=epochs, hidden=hidden, input_dropout=0.0, eval_every=epochs)
    configs = {"dropconnect": TrainConfig(model="mlp-dropconnect", dropout=0.5, **base),
               "dropout": TrainConfig(model="mlp", dropout=0.5, **base)}
    return two_way(
        "dropconnect", "dropconnect", "dropout", configs, seeds,
        f"MNIST-5k, MLP 784-{hidden}-{hidden}-10 (ReLU), {epochs} epochs, {seeds} seeds; "
        "DropConnect p = 0.5 on the hidden layers' weights vs dropout p = 0.5 on their units",
        f"{WAN}, Table 3 and the authors' project page (full MNIST, voting over 5 networks "
        "trained with distortions): DropConnect 0.21% vs dropout 0.27%; a direction only, "
        "as those setups differ from this one",
        quick, out,
    )
