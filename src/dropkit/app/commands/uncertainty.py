"""``dropkit uncertainty``: Monte Carlo dropout against the deterministic network."""

from __future__ import annotations

import argparse
from typing import Any

from dropkit.app.commands._args import common, options, rates


def add(commands: Any) -> None:
    unc = commands.add_parser(
        "uncertainty", help="Monte Carlo dropout: calibration, OOD detection, error vs samples",
        description="Train a network with dropout, then compare MC dropout with the "
        "deterministic net: reliability and ECE, entropy and mutual information on test "
        "digits vs rotated digits and noise (AUROC), and test error against samples k.",
    )
    common(unc, epochs=30, out="runs/uncertainty")
    rates(unc)
    unc.add_argument("--samples", type=int, default=100,
                     help="Monte Carlo samples T (default: 100)")
    unc.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def run(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.uncertainty import run_uncertainty

    run_uncertainty(options(args), samples=args.samples, seed=args.seed,
                    dropout=args.dropout, input_dropout=args.input_dropout)
