"""R-Drop's two passes and LayerDrop's training step, each against its plain alternative.

Run::

    .venv/bin/python benchmarks/bench_recipes.py            # full
    .venv/bin/python benchmarks/bench_recipes.py --quick    # a smoke run

R-Drop: one training step (two passes, the R-Drop loss, backward, SGD) of the course
chapter's MLP (784-1024-1024-10, input dropout 0.2, hidden 0.5) on a batch of 100
MNIST-sized inputs, with ``dropkit.rdrop_forward``'s strategies: ``batch`` (the doubled
batch, one call), ``vmap`` (two samples vectorized) and ``loop`` (two sequential passes,
what a hand-written script does). LayerDrop: one training step of the residual MLP
(``dropkit.app.models.ResidualMLP``, width 1024, 8 blocks) at LayerDrop 0.2 against the same
network without it. Interleaved rounds (``bench_mlp_step.interleaved``), medians.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from bench_mlp_step import interleaved, machine
from torch import nn

import dropkit
from dropkit.app.models import MLPWithDropout, ResidualMLP


def rdrop_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               strategy: str) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        a, b = dropkit.rdrop_forward(model, x, strategy=strategy)
        loss = dropkit.rdrop_loss(a, b, y, alpha=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def plain_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    args = parser.parse_args()
    rounds, reps = (2, 2) if args.quick else (7, 10)
    torch.manual_seed(0)
    x, y = torch.rand(100, 784), torch.randint(0, 10, (100,))
    print(machine())
    print()
    mlp = MLPWithDropout().train()
    times = interleaved({s: rdrop_step(mlp, x, y, s) for s in ("loop", "batch", "vmap")},
                        rounds, reps)
    print("| R-Drop training step, MLP 784-1024-1024-10, batch 100 | median (ms) | "
          "two passes / this |")
    print("|---|---:|---:|")
    for s, label in (("loop", "two sequential passes (loop)"),
                     ("batch", "the doubled batch (batch)"), ("vmap", "vmap over two samples")):
        print(f"| {label} | {times[s] * 1e3:.1f} | {times['loop'] / times[s]:.2f} |")
    print()
    nets = {p: ResidualMLP(hidden_size=1024, layerdrop=p).train() for p in (0.0, 0.2)}
    times = interleaved({f"{p}": plain_step(net, x, y) for p, net in nets.items()}, rounds,
                        reps)
    print("| LayerDrop training step, residual MLP, width 1024, 8 blocks, batch 100 | "
          "median (ms) | without / this |")
    print("|---|---:|---:|")
    for p in ("0.0", "0.2"):
        label = "without LayerDrop" if p == "0.0" else f"LayerDrop {p}"
        print(f"| {label} | {times[p] * 1e3:.1f} | {times['0.0'] / times[p]:.2f} |")


if __name__ == "__main__":
    main()
