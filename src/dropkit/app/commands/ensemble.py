"""``dropkit ensemble``: a deep ensemble beside one dropout network."""

from __future__ import annotations

import argparse
from typing import Any

from dropkit.app.commands._args import common, options, rates


def add(commands: Any) -> None:
    ens = commands.add_parser(
        "ensemble", help="a deep ensemble beside one dropout network (Lakshminarayanan 2017)",
        description="Train M networks without dropout (seeds 0..M-1) and one with dropout; "
        "compare the ensemble's averaged probabilities with the dropout network's weight "
        "scaling and MC averaging of M passes: error, NLL, Brier, ECE and cost.",
    )
    common(ens, epochs=20, out="runs/ensemble")
    ens.add_argument("--members", type=int, default=5, help="ensemble members M (default: 5)")
    rates(ens)


def run(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.ensemble import run_ensemble

    run_ensemble(options(args), members=args.members, dropout=args.dropout,
                 input_dropout=args.input_dropout)
