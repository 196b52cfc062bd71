"""``dropkit evaluate``: how far to trust each method's uncertainty."""

from __future__ import annotations

import argparse
from typing import Any

from dropkit.app.commands._args import common, options, rates


def add(commands: Any) -> None:
    ev = commands.add_parser(
        "evaluate", help="trust in uncertainty: shift, out of distribution, selective "
        "prediction (Ovadia et al. 2019)",
        description="Train one dropout network and a deep ensemble (resumable), then "
        "compare weight scaling, temperature scaling, MC dropout, MC dropout in the last "
        "layer and the ensemble on the test digits, under rotation, translation and "
        "corruption, and on out-of-distribution inputs.",
    )
    common(ev, epochs=20, out="runs/evaluate")
    rates(ev)
    ev.add_argument("--members", type=int, default=5, help="ensemble members M (default: 5)")
    ev.add_argument("--samples", type=int, default=30, help="Monte Carlo samples T (30)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the samples and shifts (0)")
    ev.add_argument("--no-held-out", action="store_true",
                    help="skip the held-out-class protocol (train on digits 0-4, flag 5-9)")
    ev.add_argument("--fashion-root", default=None, metavar="DIR",
                    help="a folder of Fashion-MNIST's IDX files: one more "
                    "out-of-distribution set")
    ev.add_argument("--quick", action="store_true",
                    help="three rotations and translations, two intensities, 200 "
                    "out-of-distribution inputs (with --epochs 2 --train-size 1000: a "
                    "run of under a minute)")


def run(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.evaluate import run_evaluate

    run_evaluate(options(args), members=args.members, samples=args.samples,
                 dropout=args.dropout, input_dropout=args.input_dropout, quick=args.quick,
                 seed=args.seed, held_out_classes=not args.no_held_out,
                 fashion_root=args.fashion_root)
