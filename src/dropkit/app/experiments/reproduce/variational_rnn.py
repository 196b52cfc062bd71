"""The ``variational-rnn`` claim: recurrent dropout with one mask per sequence regularizes
an LSTM, a fresh mask at every step does not (Gal & Ghahramani 2016, direction)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dropkit.app.experiments.data import load_dataset
from dropkit.app.experiments.engine import TrainConfig
from dropkit.app.experiments.reproduce.registry import ClaimResult, claim
from dropkit.app.experiments.reproduce.runs import bar, finals, paired_difference, paired_effect
from dropkit.app.experiments.reproduce.sources import GAL_RNN, ZAREMBA
from dropkit.app.experiments.reproduce.stats import Effect, judge_parts, pm

RATE = 0.25  # inputs and recurrent state alike


@claim("variational-rnn",
       "variational recurrent dropout regularizes an LSTM, naive dropout does not "
       "(Gal & Ghahramani 2016, direction)", fast=True)
def variational_rnn(quick: bool, out: Path) -> ClaimResult:
    epochs, seeds = (3, 2) if quick else (20, 3)
    base: dict[str, Any] = dict(dataset="mnist5k", hidden=128, lr=0.5, epochs=epochs,
                                eval_every=epochs)
    configs = {
        "variational": TrainConfig(model="lstm", dropout=RATE, input_dropout=RATE, **base),
        "none": TrainConfig(model="lstm", dropout=0.0, input_dropout=0.0, **base),
        "naive": TrainConfig(model="lstm-naive", dropout=RATE, input_dropout=RATE, **base),
    }
    data = load_dataset("mnist5k")
    res = finals(configs, seeds, out, data)
    paired: dict[str, dict[str, float]] = {}
    texts: list[str] = []
    parts: dict[str, Effect] = {}
    for other in ("none", "naive"):
        paired[other], text = paired_difference(configs, "variational", other, seeds, out, res,
                                                data)
        texts.append(f"vs {other}: {text}")
        parts[f"test error, {other} - variational"] = paired_effect(paired[other])
    finding, why = judge_parts(parts)
    return ClaimResult(
        setting=(f"sequential MNIST-5k (each digit read row by row: 28 steps of 28 pixels), "
                 f"an LSTM of 128 units and a linear read-out of its last step, SGD lr 0.5, "
                 f"{epochs} epochs, {seeds} seeds; dropout {RATE} on the inputs and the "
                 "recurrent state with one mask per sequence (variational, "
                 "dropkit.nn.VariationalLSTM) or a fresh mask at every step (naive), or none"),
        dropkit="; ".join(f"{k}: test error {pm(v['test_error'])}, train error "
                          f"{pm(v['train_error'])}" for k, v in res.items()),
        published=(f"{GAL_RNN}, Table 1 (Penn Treebank word-level language model, medium "
                   f"LSTM, test perplexity): {ZAREMBA}'s dropout 82.7, variational 79.7; the "
                   "paper argues that naive dropout on the recurrent connections hurts. A "
                   "different task and scale: a direction only"),
        verdict=finding.verdict,
        why=why,
        power=finding.power,
        numbers={**res, "paired": paired},
        figure=bar(res, out, "variational-rnn"),
        paired="; ".join(texts),
    )
