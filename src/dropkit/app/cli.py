"""The ``dropkit`` command.

Run::

    dropkit demo --seed 0                  # dropout's worked examples, computed live
    dropkit compare                        # MNIST-5k without vs with dropout: table, plots, report
    dropkit train --dropout 0.5 --epochs 60 --out runs/a [--resume]
    dropkit sweep --rates 0 0.2 0.5 0.8    # test error against p
    dropkit uncertainty                    # MC dropout: calibration, OOD, error vs samples
    dropkit ensemble --members 5           # a deep ensemble beside one dropout network
    dropkit active --acquisition bald random   # active learning: test error against labels
    dropkit evaluate                       # trust in uncertainty: shift, OOD, selective prediction
    torchrun --nproc_per_node=2 -m dropkit train --out runs/ddp

Each command is a module of :mod:`dropkit.app.commands`. Bad arguments exit with status 2
and one line on stderr, never a traceback: text that is not a number or not one of the
names offered, and the library's :class:`~dropkit.errors.UsageError` (every bound is the
library's check, made before any work), worded with the flag of the argument it names (a
corrupt run file or data file is one too, naming the file).
A full disk or memory the machine does not have exits with status 1 and one line; every
file is replaced whole, so nothing written before is lost and the run continues where it
stopped. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import NoReturn

from dropkit import __version__
from dropkit._dist import launched_rank
from dropkit.app.commands import COMMANDS
from dropkit.errors import UsageError


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit status 2, no usage block, no traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dropkit", description="Dropout regularization for PyTorch.")
    parser.add_argument("--version", action="version", version=f"dropkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for command in COMMANDS.values():
        command.add(commands)
    return parser


def _run(args: argparse.Namespace) -> None:
    COMMANDS[args.command].run(args)


def _as_flags(error: BaseException, options: Sequence[str]) -> str:
    """The library's message in the command line's words: each `option` it names in
    backticks, or as ``got option=value``, becomes its --flag (and the argument the error
    concerns leads, if it does not appear)."""
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    message = str(error)
    for name in options:
        message = message.replace(f"`{name}`", flag(name))
        message = message.replace(f"got {name}=", f"got {flag(name)} ")
    argument = getattr(error, "argument", None)
    if isinstance(argument, str) and argument in options and flag(argument) not in message:
        message = f"{flag(argument)}: {message}"
    return message


def _writer(args: argparse.Namespace) -> AbstractContextManager[object]:
    """The lock on the folder the command writes (its ``--out``, or the one its
    ``locked_folder`` names): one writer at a time. Under torchrun rank 0 alone writes,
    so it alone takes it."""
    command = COMMANDS[args.command]
    locked = getattr(command, "locked_folder", None)
    out = locked(args) if locked is not None else getattr(args, "out", None)
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
