"""``dropkit sweep``: test error against the drop rate."""

from __future__ import annotations

import argparse
from typing import Any

from dropkit.app.commands._args import common, options, rates


def add(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep", help="test error against the drop rate (Srivastava et al. 2014, Fig. 9)",
        description="Train one network per hidden drop rate and plot the errors against it.",
    )
    common(sweep, epochs=20, out="runs/sweep")
    sweep.add_argument("--rates", nargs="+", type=float, metavar="P",
                       default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                       help="hidden drop rates (default: 0 to 0.9 in steps of 0.1)")
    rates(sweep, hidden=False)
    sweep.add_argument("--seeds", type=int, default=1, help="seeds per rate (default: 1)")


def run(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.sweep import run_sweep

    run_sweep(options(args), rates=args.rates, input_dropout=args.input_dropout,
              seeds=args.seeds)
