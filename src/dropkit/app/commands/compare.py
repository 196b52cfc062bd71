"""``dropkit compare``: the same network without and with dropout."""

from __future__ import annotations

import argparse
from typing import Any

from dropkit.app.commands._args import common, options


def add(commands: Any) -> None:
    compare = commands.add_parser(
        "compare", help="train without and with dropout: table, plots, HTML report",
        description="Train the same network without and with dropout on real data and "
        "report train error, test error and the generalization gap over seeds.",
    )
    common(compare, epochs=60, out="runs/compare")
    compare.add_argument("--rates", nargs="+", default=["0", "0.2/0.5"], metavar="P",
                         help="configurations: P (hidden) or INPUT/HIDDEN; 0 is no dropout "
                         "(default: 0 0.2/0.5)")
    compare.add_argument("--seeds", type=int, default=2,
                         help="seeds per configuration (default: 2)")


def run(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.compare import run_compare

    run_compare(options(args), rates=args.rates, seeds=args.seeds)
