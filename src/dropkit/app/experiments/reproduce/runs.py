"""Trained runs shared by the claims: final errors over seeds (resumable), a bar chart, the
difference of two configurations paired over the test examples, the two-way claim, and
small jobs spread over worker processes (resumable)."""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
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
from dropkit.app.experiments.io import atomic_write_json
from dropkit.app.experiments.report import mean_spread, plt, save_figure
from dropkit.app.experiments.reproduce.registry import ClaimResult
from dropkit.app.experiments.reproduce.stats import Effect, judge, pm, split_noise

__all__ = ["finals", "bar", "paired_difference", "paired_effect", "compared", "two_way",
           "cnn_configs", "in_workers"]


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
    """The test-error difference ``worse - better``, paired over the test examples: the
    primary statistic of a two-way comparison of test error.

    Every test example scores (worse is wrong) - (better is wrong), averaged over the
    seeds. The scores' mean is exactly the difference of the mean test errors; their
    standard error treats the test examples as the sample, so the examples both networks
    get wrong cancel (the seeds' spread cannot see that). Its square splits into the test
    examples' own part (``fixed_se``: the per-example effect, which more seeds do not
    shrink) and the training noise's part, which shrinks as one over the seeds
    (:func:`~.stats.split_noise`).
    """
    data = data if data is not None else dataset_for(configs[better])
    scores = torch.zeros(seeds, len(data.y_test), dtype=torch.float64)
    for seed in range(seeds):
        for label, sign in ((worse, 1.0), (better, -1.0)):
            net = load_final(configs[label], data, out / "runs" / f"{label}-seed{seed}")
            wrong = predict(net, data.x_test).argmax(1) != data.y_test
            scores[seed] += sign * wrong.double()
    score = scores.mean(0)
    diff, n = score.mean().item(), len(score)
    expected = mean_spread(res[worse]["test_error"])[0] - mean_spread(res[better]["test_error"])[0]
    if abs(diff - expected) > 1e-9:
        raise RuntimeError(f"{better} vs {worse}: the checkpoints give a difference of {diff}, "
                           f"the final metrics {expected}: a checkpoint is not the final model")
    se, fixed_se = split_noise(scores)
    z = diff / se if se > 0 else 0.0
    p = 1.0 - statistics.NormalDist().cdf(z)  # one-sided: better has fewer errors
    text = (f"over the {n:,} test examples, seeds averaged per example: {better} is lower by "
            f"{100 * diff:.2f} ± {100 * se:.2f} points (z = {z:.2f}, one-sided p = {p:.2g})")
    return {"diff": diff, "se": se, "fixed_se": fixed_se, "z": z, "p": p, "seeds": seeds,
            "examples": n}, text


def paired_effect(paired: dict[str, float], published: float | None = None) -> Effect:
    """The :class:`Effect` of a :func:`paired_difference`, in points of test error."""
    return Effect(paired["diff"], paired["se"], int(paired["seeds"]), published,
                  fixed_se=paired["fixed_se"], examples=int(paired["examples"]), scale=100,
                  unit=" points")


def compared(what: str, better: str, worse: str, effect: Effect) -> str:
    """``what`` of ``worse`` less that of ``better``, with the effect's interval."""
    return f"{what}, {worse} - {better}: {effect}"


def two_way(name: str, better: str, worse: str, configs, seeds, setting, published,
            quick: bool, out: Path, data=None) -> ClaimResult:
    """A direction claim that ``better`` has a lower test error than ``worse``, judged on
    the difference paired over the test examples."""
    res = finals(configs, seeds, out, data)
    paired, paired_text = paired_difference(configs, better, worse, seeds, out, res, data)
    effect = paired_effect(paired)
    finding = judge(effect)
    return ClaimResult(
        setting=setting,
        dropkit="; ".join(f"{k}: test error {pm(v['test_error'])}" for k, v in res.items()),
        published=published,
        verdict=finding.verdict,
        why=compared("test error", better, worse, effect),
        power=finding.power,
        numbers={**res, "paired": paired},
        figure=bar(res, out, name),
        paired=paired_text,
    )


def cnn_configs(quick: bool, models: dict[str, str], full_seeds: int = 3, **fields: Any
                ) -> tuple[dict[str, TrainConfig], int, int]:
    """The CNN claims' set-up on MNIST-5k: one configuration per ``label -> model`` with
    the given fields, and the epochs and seeds of the mode (``full_seeds`` in full)."""
    epochs, seeds = (4, 2) if quick else (12, full_seeds)
    configs = {label: TrainConfig(dataset="mnist5k", model=model, epochs=epochs,
                                  eval_every=epochs, **fields)
               for label, model in models.items()}
    return configs, epochs, seeds


def in_workers(work: Callable[..., dict[str, Any]], tasks: dict[str, tuple[Any, ...]],
               settings: dict[str, Any], folder: Path, workers: int | None = None
               ) -> dict[str, dict[str, Any]]:
    """``work(*args)`` for every ``name: args`` of ``tasks``, each in a worker process of
    its own core (small networks are dispatch-bound: one core each beats two threads on
    one), its result saved atomically as ``folder/<name>.json`` beside ``settings`` and
    reused when they match. ``work`` returns JSON-able data and must be importable."""
    done: dict[str, dict[str, Any]] = {}
    for name in tasks:
        path = folder / f"{name}.json"
        if path.exists() and (saved := json.loads(path.read_text()))["settings"] == settings:
            done[name] = saved["result"]
    todo = [name for name in tasks if name not in done]
    if not todo:
        return done
    folder.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")  # torch's threads do not survive a fork
    count = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        futures = {pool.submit(_one_thread, work, *tasks[name]): name for name in todo}
        for future in as_completed(futures):
            name = futures[future]
            done[name] = future.result()
            atomic_write_json(folder / f"{name}.json", {"settings": settings,
                                                        "result": done[name]})
    return done


def _one_thread(work: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    torch.set_num_threads(1)  # one task a core
    return work(*args)
