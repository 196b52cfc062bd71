"""Scoring an unlabelled pool with BALD: dropkit's score_pool vs a baal-style loop.

Run::

    .venv/bin/python benchmarks/bench_score_pool.py            # full
    .venv/bin/python benchmarks/bench_score_pool.py --quick    # a smoke run

A pool of 4,000 MNIST-5k training images, T = 20 Monte Carlo samples, BALD scores of
every image. The peer is what baal's ``ModelWrapper.predict_on_dataset`` does in
essence: the model in training mode (BatchNorm too), T forward passes over the pool,
then the scores. dropkit: ``acquisition.score_pool`` (``mc_predict``: only the dropout
sites sample, and with ``strategy="auto"`` the samples are vectorized where dropout
comes late). Two models: the course chapter's MLP (784-1024-1024-10, input dropout 0.2
and hidden 0.5: dropout from the first layer on) and the same MLP with its input
dropout removed. Interleaved rounds (``bench_mlp_step.interleaved``), medians.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from bench_mlp_step import interleaved, machine
from torch import nn

from dropkit import acquisition as A
from dropkit.app.experiments.data import load_dataset
from dropkit.app.models import MLPWithDropout

T = 20


def baal_style(model: nn.Module, pool: torch.Tensor) -> Callable[[], torch.Tensor]:
    def score() -> torch.Tensor:
        model.train()
        with torch.no_grad():
            probs = torch.stack([model(pool).softmax(-1) for _ in range(T)])
        model.eval()
        return A.bald(probs)

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    args = parser.parse_args()
    rounds, reps = (2, 1) if args.quick else (5, 2)
    pool = load_dataset("mnist5k").x_train[:4000]
    print(machine())
    print()
    print("| model | baal-style loop (ms) | score_pool auto (ms) | loop / auto | "
          "score_pool vmap (ms) | loop / vmap |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, input_dropout in (("MLP, input 0.2 + hidden 0.5", 0.2),
                                 ("MLP, hidden 0.5 only", 0.0)):
        torch.manual_seed(0)
        model = MLPWithDropout(input_dropout=input_dropout).eval()
        times = interleaved({
            "loop": baal_style(model, pool),
            "auto": lambda m=model: A.score_pool(m, pool, "bald", T, batch_size=4000),
            "vmap": lambda m=model: A.score_pool(m, pool, "bald", T, batch_size=4000,
                                                 strategy="vmap"),
        }, rounds, reps)
        loop = times["loop"]
        print(f"| {label} | {loop * 1e3:.0f} | {times['auto'] * 1e3:.0f} | "
              f"{loop / times['auto']:.2f} | {times['vmap'] * 1e3:.0f} | "
              f"{loop / times['vmap']:.2f} |")


if __name__ == "__main__":
    main()
