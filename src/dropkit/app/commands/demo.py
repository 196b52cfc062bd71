"""``dropkit demo``: dropout's worked examples, computed live."""

from __future__ import annotations

import argparse
from typing import Any


def add(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="compute dropout's worked examples live",
        description="Dropout's worked examples (mask, rate, mean, eval vs train, "
        "spatial dropout), computed with dropkit.",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def run(args: argparse.Namespace) -> None:
    from dropkit.app.demo import run_demo

    run_demo(seed=args.seed)
