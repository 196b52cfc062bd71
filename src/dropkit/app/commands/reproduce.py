"""``dropkit reproduce``: classic claims about dropout against their papers."""

from __future__ import annotations

import argparse
import os
from typing import Any


def add(commands: Any) -> None:
    rep = commands.add_parser(
        "reproduce", help="measure classic claims about dropout against their papers",
        description="Run classic claims about dropout and set dropkit's numbers "
        "beside the published ones, with a verdict. A full run of every claim regenerates "
        "docs/REPRODUCTIONS.md; a quick or partial run writes its page under --out.",
    )
    rep.add_argument("claims", nargs="*", metavar="CLAIM", help="claims to run (default: all)")
    rep.add_argument("--list", action="store_true", help="list the claims and exit")
    rep.add_argument("--quick", action="store_true",
                     help="small settings: every claim in a few minutes")
    rep.add_argument("--out", default="runs/reproduce", help="output folder")
    rep.add_argument("--docs", default=None,
                     help="the page to write (default: docs/REPRODUCTIONS.md for a full run of "
                     "every claim, OUT/REPRODUCTIONS.md otherwise)")


def run(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.reproduce import CLAIMS, run_reproduce

    if args.list:
        for claim in CLAIMS:
            print(f"{claim.name:22s} {claim.description}")
        return
    docs = args.docs
    if docs is None:  # the committed page shows the full run of every claim, only
        full = not args.quick and not args.claims
        docs = "docs/REPRODUCTIONS.md" if full else os.path.join(args.out, "REPRODUCTIONS.md")
    run_reproduce(args.claims, quick=args.quick, out=args.out, docs=docs)
