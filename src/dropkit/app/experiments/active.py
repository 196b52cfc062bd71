"""``dropkit active``: active learning with MC dropout, test error against labels.

Run::

    dropkit active --acquisition bald random --initial 20 --step 10 --budget 200

The protocol of Gal, Islam & Ghahramani 2017: start from ``initial`` labelled training
digits (the same number per class, drawn with the seed), train a network from scratch on
the labelled set, score every unlabelled training digit by the acquisition (T Monte
Carlo samples), label the ``step`` best, and repeat until ``budget`` labels; the test
error after each round is the curve. Acquisitions: the scores of
:mod:`dropkit.acquisition` (top k), ``batchbald`` (on consistent samples of the
``4 * step`` highest-BALD candidates), ``power-bald`` (stochastic, power mode) and
``random``. Every round's network trains in its own resumable folder and the labelled
set is saved after each round (atomically), so ``--resume`` continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from dropkit import acquisition as A
from dropkit.app.experiments.data import Dataset
from dropkit.app.experiments.engine import (
    MC_STRATEGY,
    RunOptions,
    TrainConfig,
    check_samples,
    load_final,
    train,
)
from dropkit.app.experiments.io import CORRUPT, atomic_write_json, check_manifest, read_json
from dropkit.app.experiments.memory import FLOAT_BYTES, check_fits_memory
from dropkit.app.experiments.report import plt, print_table, save_figure, write_report
from dropkit.errors import UsageError

__all__ = ["run_active", "ACQUISITIONS", "ACTIVE_LR", "acquire", "initial_labels",
           "read_state", "SCORE_BATCH", "Protocol"]

ACQUISITIONS = A.ACQUISITIONS
# The learning rate of each round's network unless one is given: on 20 to 220 labels the
# experiments' 0.05 made the CNN diverge in some rounds (40-65% test error where its
# neighbours had 10-20%, whatever the acquisition); 0.01 trained every round (4 seeds
# at 120 and at 220 labels: 11-17% and 8-10%).
ACTIVE_LR = 0.01
SCORE_BATCH = 256  # pool points scored at once (acquire's batch_size)


def initial_labels(y: torch.Tensor, n: int, n_classes: int, seed: int) -> list[int]:
    """``n`` training indices, as many per class as ``n`` allows, drawn with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    per_class = max(1, n // n_classes)
    picked: list[int] = []
    for c in range(n_classes):
        members = (y == c).nonzero().squeeze(1)
        picked += members[torch.randperm(len(members), generator=g)[:per_class]].tolist()
    rest = [i for i in torch.randperm(len(y), generator=g).tolist() if i not in set(picked)]
    return (picked + rest)[:n]


def acquire(name: str, model: torch.nn.Module, pool_x: torch.Tensor, step: int, samples: int,
            seed: int, candidate_samples: int | None = None, consistent: bool = False
            ) -> list[int]:
    """Positions in ``pool_x`` of the ``step`` points acquisition ``name`` labels next
    (:func:`dropkit.acquisition.acquire`; the per-point scores' samples seeded too)."""
    torch.manual_seed(seed)
    return A.acquire(model, pool_x, step, name, samples, seed=seed, strategy=MC_STRATEGY,
                     candidate_samples=candidate_samples, consistent=consistent,
                     batch_size=SCORE_BATCH).tolist()


def _subset(data: Dataset, idx: list[int]) -> Dataset:
    index = torch.tensor(idx)
    return replace(data, x_train=data.x_train[index], y_train=data.y_train[index])


def read_state(path: Path, first: list[int], step: int, pool: int) -> dict[str, Any]:
    """The labelled set and the rounds done, from ``path``, checked against the run: the
    seeded initial labels ``first``, then ``step`` more per round, every index a distinct
    training example below ``pool``, every round's labels and a finite test error."""
    state = read_json(path)
    labelled, rounds = state.get("labelled"), state.get("rounds")
    problem = None
    if not isinstance(labelled, list) or not isinstance(rounds, list):
        problem = "no lists `labelled` and `rounds`"
    elif not all(type(i) is int and 0 <= i < pool for i in labelled):
        problem = f"an index that is not a training example in [0, {pool})"
    elif len(set(labelled)) != len(labelled):
        problem = "an index labelled twice"
    elif labelled[: len(first)] != first:
        problem = "initial labels other than this run's seed draws"
    elif any(not isinstance(r, dict) or r.get("labels") != len(first) + i * step
             or not isinstance(r.get("test_error"), (int, float))
             or not math.isfinite(r["test_error"]) for i, r in enumerate(rounds)):
        problem = "rounds that do not follow from `initial` and `step` with finite errors"
    elif len(labelled) - len(first) not in (step * max(len(rounds) - 1, 0), step * len(rounds)):
        problem = f"{len(labelled)} labels after {len(rounds)} rounds"
    if problem is not None:
        raise UsageError(f"active: {str(path)!r} holds {problem}; {CORRUPT}")
    return {"labelled": labelled, "rounds": rounds}


@dataclass(frozen=True)
class Protocol:
    """What defines an active-learning run beside its training configuration."""

    acquisitions: tuple[str, ...] = ("bald", "random")
    initial: int = 20  # labels to start from, balanced over classes
    step: int = 10  # labels acquired per round
    budget: int = 100  # stop at this many labels
    samples: int = 20  # Monte Carlo samples T
    seeds: int = 1
    candidate_samples: int | None = None  # BatchBALD's candidates' networks (default T)
    consistent: bool = False  # score every pool point with the same T networks

    def check(self) -> None:
        """Raise a :class:`~dropkit.errors.UsageError` naming the first bad field."""
        unknown = [a for a in self.acquisitions if a not in ACQUISITIONS]
        if unknown or not self.acquisitions:
            raise UsageError(f"active: expected `acquisitions` among "
                             f"{', '.join(ACQUISITIONS)}, got {list(self.acquisitions)}",
                             "acquisitions")
        optional = (("candidate_samples", 2),) if self.candidate_samples is not None else ()
        for name, least in (("initial", 1), ("step", 1), ("samples", 2), ("seeds", 1),
                            *optional):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UsageError(f"active: expected `{name}` to be an int >= {least}, got "
                                 f"{name}={value!r}", name)
        if self.budget < self.initial:
            raise UsageError(f"active: expected `budget` >= `initial` ({self.initial}), got "
                             f"budget={self.budget!r}", "budget")

    @property
    def rounds(self) -> int:
        return (self.budget - self.initial) // self.step + 1


def _curve(config: TrainConfig, data: Dataset, out: Path, name: str, seed: int,
           protocol: Protocol, tick: Callable[[], None] = lambda: None
           ) -> list[dict[str, Any]]:
    folder = out / "runs" / f"{name}-seed{seed}"
    state_path = folder / "state.json"
    initial, step = protocol.initial, protocol.step
    first = initial_labels(data.y_train, initial, data.n_classes, seed)
    if state_path.exists():  # resume: the labelled set and the rounds done
        state = read_state(state_path, first, step, len(data.y_train))
    else:
        state = {"labelled": first, "rounds": []}
    while True:
        r = len(state["rounds"])
        target = initial + r * step  # labels of round r
        if target > protocol.budget:
            atomic_write_json(state_path, state)
            return state["rounds"]
        if len(state["labelled"]) < target:  # label round r's points with round r-1's net
            done = replace(config, seed=seed * 1000 + r - 1, train_size=None)
            model = load_final(done, data, folder / f"round{r - 1}").eval()
            chosen = set(state["labelled"])
            pool = [i for i in range(len(data.y_train)) if i not in chosen]
            picks = acquire(name, model, data.x_train[torch.tensor(pool)], step,
                            protocol.samples, seed * 1000 + r - 1, protocol.candidate_samples,
                            protocol.consistent)
            state["labelled"] = state["labelled"] + [pool[p] for p in picks]
            atomic_write_json(state_path, state)
        labelled = state["labelled"][:target]
        run_config = replace(config, seed=seed * 1000 + r, train_size=None)
        history = train(run_config, folder / f"round{r}", resume=True, progress=False,
                        data=_subset(data, labelled), log=lambda *_: None)
        state["rounds"].append({"labels": len(labelled),
                                "test_error": history[-1]["test_error"]})
        atomic_write_json(state_path, state)
        tick()


def run_active(options: RunOptions | None = None, *, acquisitions: tuple[str, ...] = (
        "bald", "random"), initial: int = 20, step: int = 10, budget: int = 100,
        samples: int = 20, seeds: int = 1, candidate_samples: int | None = None,
        consistent: bool = False, dropout: float = 0.5, input_dropout: float = 0.0,
        resume: bool = False) -> dict[str, Any]:
    """Test error against labels for each acquisition and seed; a plot, results.json and
    report.html in the output folder (default runs/active; epochs default 50, learning
    rate ``ACTIVE_LR``, 0.01). A folder
    that holds a run continues it with ``resume``, and is refused without."""
    options = options if options is not None else RunOptions()
    protocol = Protocol(tuple(acquisitions), initial, step, budget, samples, seeds,
                        candidate_samples, consistent)
    protocol.check()
    config, out, data = _open(options, protocol, dropout, input_dropout, resume)
    options.log(f"dropkit active: {config.dataset}, {config.model}, "
                f"{', '.join(acquisitions)}, {initial} + {step} per round up to {budget} "
                f"labels, T = {samples} -> {out}")
    curves = _curves(config, data, out, protocol, options.progress)
    return _results(config, out, protocol, curves, options.log)


def _open(options: RunOptions, protocol: Protocol, dropout: float, input_dropout: float,
          resume: bool) -> tuple[TrainConfig, Path, Dataset]:
    """The run's configuration, folder and pool, every check made before any training."""
    lr = options.overrides.get("lr", ACTIVE_LR)
    config, out, data = options.prepare(50, "runs/active", dropout=dropout,
                                        input_dropout=input_dropout, lr=lr)
    if (out / "runs").exists() and not resume:
        raise UsageError(f"active: `out` {str(out)!r} already holds a run; set `resume` to "
                         "continue it or choose another folder", "out")
    if data.task != "classification":
        raise UsageError(f"active: `dataset` must be a classification set, {config.dataset!r} "
                         "is regression", "dataset")
    if config.train_size is not None:  # the pool: the first train_size training examples
        data = _subset(data, list(range(config.train_size)))
    if protocol.budget > len(data.y_train):
        raise UsageError(f"active: expected `budget` <= {len(data.y_train)} (the training "
                         f"examples there are to label), got budget={protocol.budget}",
                         "budget")
    check_samples(config, data, "active", ("dropout",))
    most = max(protocol.samples, protocol.candidate_samples or 0)
    check_fits_memory("active", 3 * most * SCORE_BATCH * data.n_classes * FLOAT_BYTES,
                      f"scoring {SCORE_BATCH} pool points with {most:,} samples", "samples")
    # more rounds, seeds or acquisitions extend the run; anything else would mix two runs
    check_manifest(out, "active", _settings(config, protocol),
                   frozenset({"budget", "seeds", "acquisitions"}))
    return config, out, data


def _settings(config: TrainConfig, protocol: Protocol) -> dict[str, Any]:
    return {**asdict(config), **asdict(protocol), "acquisitions": list(protocol.acquisitions)}


def _curves(config: TrainConfig, data: Dataset, out: Path, protocol: Protocol,
            progress: bool) -> dict[str, list[list[dict[str, Any]]]]:
    """Every acquisition's rounds for every seed (a progress bar over the rounds)."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=protocol.rounds * protocol.seeds * len(protocol.acquisitions),
                   desc="active", unit="round", leave=False)
    tick = bar.update if bar is not None else (lambda: None)
    try:
        return {name: [_curve(config, data, out, name, seed, protocol, tick)
                       for seed in range(protocol.seeds)]
                for name in protocol.acquisitions}
    finally:
        if bar is not None:
            bar.close()


def _results(config: TrainConfig, out: Path, protocol: Protocol,
             curves: dict[str, list[list[dict[str, Any]]]], log: Callable[[str], None]
             ) -> dict[str, Any]:
    """The table, plot, results.json and report of the curves."""
    labels = [r["labels"] for r in next(iter(curves.values()))[0]]
    mean = {name: [sum(c[i]["test_error"] for c in runs) / len(runs) for i in range(len(labels))]
            for name, runs in curves.items()}
    header = ["labels", *protocol.acquisitions]
    rows = [[str(n), *(f"{100 * mean[a][i]:.2f}" for a in protocol.acquisitions)]
            for i, n in enumerate(labels)]
    print_table(header, rows, log)
    figure = _plot(labels, mean, out)
    settings = _settings(config, protocol)
    payload = {"settings": settings, "labels": labels, "curves": curves,
               "mean_test_error": mean}
    atomic_write_json(out / "results.json", payload)
    reading = [f"Test error (%, mean over {protocol.seeds} seed(s)) after each round of "
               "labelling."]
    report = write_report(out / "report.html", f"dropkit active on {config.dataset}", reading,
                          [(header, rows)], [(figure, "Test error against labels")], settings)
    log(f"report: {report}")
    return payload


def _plot(labels: list[int], mean: dict[str, list[float]], out: Path) -> Path:
    fig, ax = plt().subplots(figsize=(6.5, 4))
    for name, errors in mean.items():
        ax.plot(labels, [100 * e for e in errors], marker="o", ms=3, label=name)
    ax.set_xlabel("labelled training examples")
    ax.set_ylabel("test error %")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out / "active.png")
