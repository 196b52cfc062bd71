"""Cost of correct masks under activation checkpointing, as ratios measured in one run.

Run::

    .venv/bin/python benchmarks/bench_checkpoint.py            # full
    .venv/bin/python benchmarks/bench_checkpoint.py --quick    # a smoke run

A training step (forward, loss, backward, SGD) of 8 pre-norm residual MLP blocks
(width 256, hidden 1024, GELU, dropout 0.1 after the activation and on the residual
branch) on 32 x 64 tokens, each block under ``torch.utils.checkpoint``
(``use_reentrant=False``). The configurations:

- torch's ``nn.Dropout`` with ``preserve_rng_state=True``: the peer, and the baseline of
  the ratios (correct: checkpoint restores the global generator);
- dropkit's torch backend on the global generator, ``preserve_rng_state=True``;
- dropkit's torch backend, a :class:`dropkit.SeedPlan` (a generator per site),
  ``preserve_rng_state=False``: correct only because dropkit replays the draws;
- dropkit's seeded backend with a SeedPlan, ``preserve_rng_state=False``;
- torch's ``nn.Dropout`` without checkpointing, for scale.

Configurations run interleaved in alternating order (``bench_mlp_step.interleaved``);
each reports its median. Ratio: configuration / peer; below 1 is faster.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from bench_mlp_step import interleaved, machine
from torch import nn
from torch.utils.checkpoint import checkpoint

import dropkit
import dropkit.nn as dn

WIDTH, HIDDEN, BLOCKS, TOKENS = 256, 1024, 8, (32, 64)


class Block(nn.Module):
    def __init__(self, drop: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(WIDTH)
        self.up, self.down = nn.Linear(WIDTH, HIDDEN), nn.Linear(HIDDEN, WIDTH)
        self.drop_hidden, self.drop_out = drop(), drop()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop_hidden(nn.functional.gelu(self.up(self.norm(x))))
        return x + self.drop_out(self.down(h))


class Stack(nn.Module):
    def __init__(self, drop: Callable[[], nn.Module], *, preserve: bool | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(drop) for _ in range(BLOCKS))
        self.preserve = preserve  # None: no checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.preserve is None:
                x = block(x)
            else:
                x = checkpoint(block, x, use_reentrant=False,
                               preserve_rng_state=self.preserve)
        return x


def step_fn(model: Stack, x: torch.Tensor, plan: dropkit.SeedPlan | None) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        opt.step()
        if plan is not None:
            plan.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    args = parser.parse_args()
    rounds, reps = (3, 1) if args.quick else (11, 3)

    x = torch.randn(*TOKENS, WIDTH, generator=torch.Generator().manual_seed(0))
    configs: dict[str, tuple[Callable[[], nn.Module], bool | None, bool]] = {
        "torch nn.Dropout, preserve_rng_state=True (peer)":
            (lambda: nn.Dropout(0.1), True, False),
        "dropkit torch backend, global generator, preserve_rng_state=True":
            (lambda: dn.Dropout(0.1), True, False),
        "dropkit torch backend, SeedPlan, preserve_rng_state=False":
            (lambda: dn.Dropout(0.1), False, True),
        "dropkit seeded backend, SeedPlan, preserve_rng_state=False":
            (lambda: dn.Dropout(0.1, backend="seeded"), False, True),
        "torch nn.Dropout, no checkpointing":
            (lambda: nn.Dropout(0.1), None, False),
    }
    steps = {}
    for label, (drop, preserve, planned) in configs.items():
        torch.manual_seed(0)  # the same weights in every configuration
        model = Stack(drop, preserve=preserve)
        plan = dropkit.SeedPlan(model, seed=0) if planned else None
        steps[label] = step_fn(model, x, plan)
    times = interleaved(steps, rounds, reps)

    peer = times[next(iter(configs))]
    print(machine())
    print()
    print("| configuration | step (ms) | / peer |")
    print("|---|---:|---:|")
    for label, t in times.items():
        print(f"| {label} | {t * 1e3:.1f} | {t / peer:.3f} |")


if __name__ == "__main__":
    main()
