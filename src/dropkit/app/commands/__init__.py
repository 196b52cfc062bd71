"""The ``dropkit`` subcommands, one module each.

A command module has ``add(commands)``, which adds its parser to argparse's subparsers,
and ``run(args)``, which runs it from the parsed arguments. The parser converts text and
offers the library's names; every bound is the library's check. A new command is one
module here and one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
from typing import Any, Protocol

from dropkit.app.commands import (
    active,
    compare,
    demo,
    ensemble,
    evaluate,
    export,
    reproduce,
    sweep,
    train,
    uncertainty,
)


class Command(Protocol):
    """What a command module offers."""

    def add(self, commands: Any) -> None: ...

    def run(self, args: argparse.Namespace) -> None: ...

    # optional: ``locked_folder(args)``, the folder the command writes where ``--out`` is
    # not one (``dropkit export`` writes a file into a run folder)


#: The subcommands, in the order ``--help`` lists them.
COMMANDS: dict[str, Command] = {
    "demo": demo,
    "compare": compare,
    "train": train,
    "sweep": sweep,
    "uncertainty": uncertainty,
    "ensemble": ensemble,
    "evaluate": evaluate,
    "export": export,
    "active": active,
    "reproduce": reproduce,
}
