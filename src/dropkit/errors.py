"""The error type for bad user input, so that a mistake and a bug are told apart.

A :class:`UsageError` says the caller asked for something that cannot be done as
asked (a rate out of range, a folder that holds another run, a data file that is
missing). ``dropkit``'s command line prints it as one line and exits with status 2,
wording the argument it names as its flag; every other exception is a bug and keeps
its traceback. It is a ``ValueError`` (and :class:`UsageTypeError`, for a value of the
wrong type, is also a ``TypeError``), so code that catches those still does: every check
of dropkit's raises one of the two, so the command line needs no checks of its own.
"""

from __future__ import annotations

__all__ = ["UsageError", "UsageTypeError"]


class UsageError(ValueError):
    """Bad input, in the library's words.

    Args:
        message: what was expected and what was received, naming the parameter in
            backticks (``"train: expected `dropout` to be a rate in [0, 1), got 1.5"``).
        argument: the parameter it concerns, if one; the CLI words it as ``--flag``.
    """

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class UsageTypeError(UsageError, TypeError):
    """Bad input of the wrong type (a str where a number belongs): a
    :class:`UsageError` that is also a ``TypeError``, as Python's own checks raise."""
