"""``dropkit export``: serve a trained run's Monte Carlo dropout (ONNX or torch.export)."""

from __future__ import annotations

import argparse
import os
from typing import Any


def add(commands: Any) -> None:
    from dropkit.app.experiments.export import FORMATS

    ex = commands.add_parser(
        "export", help="a trained run's MC dropout as one program: ONNX or torch.export",
        description="Export the network of a `dropkit train` run as a program that returns "
        "T Monte Carlo samples per call with sampling kept on, its masks a function of a "
        "seed input (the same seed replays a prediction), for onnxruntime or torch.",
    )
    ex.add_argument("run_dir", help="the folder of a `dropkit train` run")
    ex.add_argument("--samples", type=int, default=30, help="Monte Carlo samples T (30)")
    ex.add_argument("--format", choices=FORMATS, default="onnx",
                    help="onnx (onnxruntime) or pt2 (torch.export.load) (default: onnx)")
    ex.add_argument("--out", default=None,
                    help="the file to write (default: RUN_DIR/mc.onnx or RUN_DIR/mc.pt2)")
    ex.add_argument("--no-seed-input", action="store_true",
                    help="draw masks from the runtime's generator: faster, no replay")


def locked_folder(args: argparse.Namespace) -> str | None:
    """The run folder, locked while its network is read and the file written (``--out``
    names a file, not a folder); none where it is not a folder, which the export refuses."""
    return args.run_dir if os.path.isdir(args.run_dir) else None


def run(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.export import run_export

    run_export(args.run_dir, samples=args.samples, format=args.format, out=args.out,
               seed_input=not args.no_seed_input)
