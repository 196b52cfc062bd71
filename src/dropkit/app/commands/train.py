"""``dropkit train``: one configuration, resumable and torchrun-ready."""

from __future__ import annotations

import argparse
from typing import Any

from dropkit.app.commands._args import common, options, rates
from dropkit.tools.schedules import SCHEDULES

# the flags that set a TrainConfig field of the same name, when given
_SETTINGS = ("dropout", "input_dropout", "seed", "schedule", "early_stopping", "min_delta",
             "augment", "rdrop", "layerdrop", "backend")


def add(commands: Any) -> None:
    train = commands.add_parser(
        "train", help="train one configuration (resumable, torchrun-ready)",
        description="Train one configuration; DIR gets config.json, metrics.jsonl, "
        "checkpoint.pt and curves.png. Under torchrun it trains with DistributedDataParallel.",
    )
    common(train, epochs=60, out="runs/train")
    rates(train, input_help="input drop rate; the CNN's spatial dropout (0.2)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    train.add_argument("--schedule", default=None, metavar="SPEC",
                       help="dropout schedule over epochs, e.g. early:0.5,20 or linear:0.5,0,30 "
                       f"({', '.join(SCHEDULES)})")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint")
    train.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                       help="stop after PATIENCE epochs without a lower validation loss, keep "
                       "the best epoch's weights (needs --val-fraction)")
    train.add_argument("--min-delta", type=float, default=None,
                       help="the least decrease of validation loss that counts (0)")
    train.add_argument("--augment", default=None, metavar="SPEC",
                       help="augment the training images: shift:K, rotate:DEG or both "
                       "joined by + (e.g. shift:2)")
    train.add_argument("--rdrop", type=float, default=None, metavar="ALPHA",
                       help="R-Drop: two passes per batch, plus ALPHA times their symmetric "
                       "KL (Liang et al. 2021)")
    train.add_argument("--layerdrop", type=float, default=None, metavar="P",
                       help="LayerDrop: skip each residual block with probability P (model "
                       "resmlp; Fan et al. 2019)")
    train.add_argument("--backend", choices=("torch", "seeded"), default="torch",
                       help="dropout backend; seeded: masks from a SeedPlan of (seed, step), "
                       "exact across resume and activation checkpointing (default: torch)")


def run(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.train import run_train

    settings = {k: getattr(args, k) for k in _SETTINGS if getattr(args, k) is not None}
    run_train(options(args), resume=args.resume, **settings)
