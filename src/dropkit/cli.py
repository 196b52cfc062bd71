"""The ``dropkit`` command.

Run::

    dropkit demo --seed 0
    dropkit --help
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from dropkit import __version__


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit status 2, no usage block, no traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a seed >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dropkit", description="Dropout regularization for PyTorch.")
    parser.add_argument("--version", action="version", version=f"dropkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    demo = commands.add_parser(
        "demo", help="compute the lesson's worked examples live",
        description="The lesson's dropout examples (mask, rate, mean, eval vs train, "
        "spatial dropout), computed with dropkit.",
    )
    demo.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from dropkit.demo import run_demo

        run_demo(seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
