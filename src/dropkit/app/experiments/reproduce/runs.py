"""Trained runs shared by the claims: final errors over seeds (resumable), a bar chart, the
difference of two configurations paired over the test examples, and the two-way verdict."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import torch

from dropkit.app.experiments.engine import (
    TrainConfig,
    dataset_for,
    load_final,
    predict,
    train_seeds,
)
from dropkit.app.experiments.report import mean_spread, plt, save_figure
from dropkit.app.experiments.reproduce.registry import ClaimResult, Verdict
from dropkit.app.experiments.reproduce.stats import directional, pm

__all__ = ["finals", "bar", "paired_difference", "two_way", "cnn_configs"]


def finals(configs: dict[str, TrainConfig], seeds: int, out: Path, data=None
            ) -> dict[str, dict[str, list[float]]]:
    """Final train/test error of each configuration over seeds (resumable runs)."""
    data = data if data is not None else dataset_for(next(iter(configs.values())))
    res: dict[str, dict[str, list[float]]] = {}
    for label, histories in train_seeds(configs, seeds, out, data=data).items():
        final = [h[-1] for h in histories]
        tr, te = [r["train_error"] for r in final], [r["test_error"] for r in final]
        res[label] = {"train_error": tr, "test_error": te,
                      "train_loss": [r["eval_train_loss"] for r in final],
                      "gap": [b - a for a, b in zip(tr, te, strict=True)]}
    return res


def bar(res: dict[str, dict[str, list[float]]], out: Path, title: str, key="test_error") -> str:
    fig, ax = plt().subplots(figsize=(6, 3.6))
    labels = list(res)
    scale = 100 if key.endswith("error") else 1
    means = [scale * mean_spread(res[k][key])[0] for k in labels]
    sds = [scale * mean_spread(res[k][key])[1] for k in labels]
    ax.bar(labels, means, yerr=sds, capsize=4, color=[f"C{i}" for i in range(len(labels))])
    ax.set_ylabel(key.replace("_", " ") + (" %" if key.endswith("error") else ""))
    ax.set_title(title)
    return str(save_figure(fig, out / "result.png"))


def paired_difference(configs: dict[str, TrainConfig], better: str, worse: str, seeds: int,
                      out: Path, res: dict[str, dict[str, list[float]]], data=None
                      ) -> tuple[dict[str, float], str]:
    """The test-error difference ``worse - better``, paired over the test examples.

    Every test example scores (worse is wrong) - (better is wrong), averaged over the
    seeds. The scores' mean is exactly the difference of the mean test errors; their
    standard error treats the test examples as the sample, so the examples both networks
    get wrong cancel (the seeds' spread cannot see that), while training noise enters
    only through the seeds averaged within each example. Reported beside the verdict,
    which keeps its rule.
    """
    data = data if data is not None else dataset_for(configs[better])
    score = torch.zeros(len(data.y_test), dtype=torch.float64)
    for seed in range(seeds):
        for label, sign in ((worse, 1.0), (better, -1.0)):
            net = load_final(configs[label], data, out / "runs" / f"{label}-seed{seed}")
            wrong = predict(net, data.x_test).argmax(1) != data.y_test
            score += sign * wrong.double() / seeds
    diff, n = score.mean().item(), len(score)
    expected = mean_spread(res[worse]["test_error"])[0] - mean_spread(res[better]["test_error"])[0]
    if abs(diff - expected) > 1e-9:
        raise RuntimeError(f"{better} vs {worse}: the checkpoints give a difference of {diff}, "
                           f"the final metrics {expected}: a checkpoint is not the final model")
    se = score.std().item() / math.sqrt(n)
    z = diff / se if se > 0 else 0.0
    p = 1.0 - statistics.NormalDist().cdf(z)  # one-sided: better has fewer errors
    text = (f"over the {n:,} test examples, seeds averaged per example: {better} is lower by "
            f"{100 * diff:.2f} ± {100 * se:.2f} points (z = {z:.2f}, one-sided p = {p:.2g})")
    return {"diff": diff, "se": se, "z": z, "p": p}, text



def two_way(name: str, better: str, worse: str, configs, seeds, setting, published,
             quick: bool, out: Path, data=None, key="test_error") -> ClaimResult:
    res = finals(configs, seeds, out, data)
    ok, diff = directional(better, worse, res, key)
    paired, paired_text = paired_difference(configs, better, worse, seeds, out, res, data)
    percent = key.endswith("error")
    metric = key.replace("_", " ")
    size = f"{100 * abs(diff):.2f} points" if percent else f"{abs(diff):.4f}"
    if ok:
        why = f"{better} is lower than {worse} by {size}, more than 2 standard errors"
    elif diff > 0:
        why = (f"{better} is lower than {worse} by {size}, less than 2 standard errors of the "
               "seeds' spread: not established at this number of seeds")
    else:
        why = f"{better} is not lower than {worse} (higher by {size})"
    return ClaimResult(
        setting=setting,
        dropkit="; ".join(f"{k}: {metric} {pm(v[key], percent)}" for k, v in res.items()),
        published=published,
        verdict=Verdict.DIRECTION if ok else Verdict.NOT,
        why=why,
        numbers={**res, "paired": paired},
        figure=bar(res, out, name, key),
        paired=paired_text,
    )




def cnn_configs(quick: bool, models: dict[str, str], **fields: Any
                ) -> tuple[dict[str, TrainConfig], int, int]:
    """The CNN claims' set-up on MNIST-5k: one configuration per ``label -> model`` with
    the given fields, and the epochs and seeds of the mode."""
    epochs, seeds = (4, 2) if quick else (12, 3)
    configs = {label: TrainConfig(dataset="mnist5k", model=model, epochs=epochs,
                                  eval_every=epochs, **fields)
               for label, model in models.items()}
    return configs, epochs, seeds
