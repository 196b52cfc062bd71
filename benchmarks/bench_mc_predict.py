"""Monte Carlo prediction: the lesson's loop against each mc_predict strategy, as ratios.

Run::

    .venv/bin/python benchmarks/bench_mc_predict.py            # full
    .venv/bin/python benchmarks/bench_mc_predict.py --quick    # a smoke run

T = 50 samples of a batch of 256 through two models:

* ``trunk``: a BatchNorm trunk (784-512-512, BatchNorm + ReLU), a residual block with
  dropout, and dropout before the classifier.
* ``head``: a 3-layer MLP (784-1024-1024-10) with dropout only before its last layer,
  where the shared prefix is nearly the whole network.

``loop`` is the lesson's ``mc_dropout_predict``: T forward passes (run here under
``mc_mode``, so that it does not corrupt BatchNorm as ``model.train()`` would). Each
variant runs interleaved with the others; the table gives medians and loop / variant.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch
from torch import nn

import dropkit
import dropkit.nn as dn


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.drop = dn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(torch.relu(self.fc(x)))


def trunk_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 512), nn.BatchNorm1d(512), nn.ReLU(),
        nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(),
        Residual(512), dn.Dropout(0.5), nn.Linear(512, 10),
    ).eval()


def head_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
        dn.Dropout(0.5), nn.Linear(1024, 10),
    ).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    args = parser.parse_args()
    rounds = 2 if args.quick else 7
    torch.manual_seed(0)
    x = torch.randn(256, 784)
    samples = 50
    print(f"dropkit {dropkit.__version__}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"{datetime.date.today().isoformat()}; T = {samples}, batch 256")
    print()
    print("| model | strategy | median (ms) | loop / strategy |")
    print("|---|---|---:|---:|")
    strategies = ["loop", "batch", "vmap", "auto"]
    for label, model in [("trunk", trunk_model()), ("head", head_model())]:
        times: dict[str, list[float]] = {s: [] for s in strategies}
        for s in strategies:  # warm-up
            dropkit.mc_predict(model, x, samples, strategy=s)
        for r in range(rounds):
            for s in strategies if r % 2 == 0 else strategies[::-1]:
                start = time.perf_counter()
                dropkit.mc_predict(model, x, samples, strategy=s)
                times[s].append(time.perf_counter() - start)
        med = {s: statistics.median(t) for s, t in times.items()}
        for s in strategies:
            print(f"| {label} | {s} | {med[s] * 1e3:.1f} | {med['loop'] / med[s]:.2f} |")


if __name__ == "__main__":
    main()
