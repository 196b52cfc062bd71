"""``dropkit active``: active learning with MC dropout."""

from __future__ import annotations

import argparse
from typing import Any

from dropkit.app.commands._args import common, options, rates


def add(commands: Any) -> None:
    from dropkit.app.experiments.active import ACQUISITIONS

    act = commands.add_parser(
        "active", help="active learning with MC dropout: test error against labels",
        description="Start from a few labelled digits, train, score the unlabelled pool "
        "by an acquisition (T MC samples), label the best, repeat (Gal et al. 2017). Each "
        "round's network trains with learning rate 0.01 unless --lr says otherwise.",
    )
    common(act, epochs=50, out="runs/active")
    act.add_argument("--acquisition", nargs="+", choices=ACQUISITIONS,
                     default=["bald", "random"], help="acquisitions to compare")
    act.add_argument("--initial", type=int, default=20,
                     help="labelled digits to start from, balanced over classes (20)")
    act.add_argument("--step", type=int, default=10, help="labels acquired per round (10)")
    act.add_argument("--budget", type=int, default=100, help="stop at this many labels (100)")
    act.add_argument("--samples", type=int, default=20, help="Monte Carlo samples T (20)")
    act.add_argument("--candidate-samples", type=int, default=None,
                     help="consistent networks for BatchBALD's candidates (default: --samples)")
    act.add_argument("--consistent", action="store_true",
                     help="score every pool point with the same T networks")
    act.add_argument("--seeds", type=int, default=1, help="seeds per acquisition (1)")
    rates(act, input=False)
    act.add_argument("--resume", action="store_true", help="continue the run in --out")


def run(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.active import run_active

    run_active(options(args), acquisitions=tuple(args.acquisition), initial=args.initial,
               step=args.step, budget=args.budget, samples=args.samples, seeds=args.seeds,
               candidate_samples=args.candidate_samples, consistent=args.consistent,
               dropout=args.dropout, resume=args.resume)
