"""Bad input is a UsageError; the command line words it with flags, bugs keep tracebacks."""

from __future__ import annotations

import pytest

from dropkit.app import cli
from dropkit.errors import UsageError


class TestUsageError:
    def test_is_a_value_error_that_names_its_argument(self) -> None:
        error = UsageError("train: expected `dropout` to be a rate, got 2", "dropout")
        assert isinstance(error, ValueError) and error.argument == "dropout"

    def test_the_cli_words_arguments_as_flags(self) -> None:
        error = UsageError("f: expected `input_dropout` in [0, 1), got 2; see `seeds`",
                           "input_dropout")
        assert cli._as_flags(error, ["input_dropout", "seeds"]) == (
            "f: expected --input-dropout in [0, 1), got 2; see --seeds")
        # an argument the message does not name leads the line
        assert cli._as_flags(UsageError("f: no such set", "dataset"), ["dataset"]) == (
            "--dataset: f: no such set")


def test_a_bug_keeps_its_traceback(monkeypatch) -> None:
    # any exception that is not bad input escapes the CLI instead of becoming one line
    def broken(args) -> None:
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(cli, "_run", broken)
    with pytest.raises(ValueError, match="an internal invariant broke"):
        cli.main(["train", "--epochs", "1"])


def test_bad_input_is_one_line_exit_2(monkeypatch, capsys) -> None:
    def bad(args) -> None:
        raise UsageError("train: expected `dropout` in [0, 1), got 2", "dropout")

    monkeypatch.setattr(cli, "_run", bad)
    assert cli.main(["train", "--epochs", "1"]) == 2
    assert capsys.readouterr().err == (
        "dropkit train: error: train: expected --dropout in [0, 1), got 2\n")


def _raises_of(path, names):
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) \
                and isinstance(node.exc.func, ast.Name) and node.exc.func.id in names:
            yield node.lineno, node.exc.func.id


def test_every_check_of_the_library_raises_a_usage_error() -> None:
    """Bad input anywhere in dropkit is a UsageError (a ValueError, or a UsageTypeError
    that is also a TypeError), so the command line needs no checks of its own."""
    from pathlib import Path

    import dropkit

    root = Path(dropkit.__file__).parent
    plain = [f"{p.relative_to(root)}:{line} raises {name}"
             for p in sorted(root.rglob("*.py"))
             for line, name in _raises_of(p, {"ValueError", "TypeError"})
             # a claim registered twice is a bug of dropkit's own, not bad input
             if p.name != "registry.py"]
    assert plain == []


def test_a_wrong_type_is_both_a_usage_error_and_a_type_error() -> None:
    from dropkit.errors import UsageTypeError
    from dropkit.functional import dropout

    with pytest.raises(UsageTypeError) as caught:
        dropout([1.0], 0.5)  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, UsageError)
    with pytest.raises(UsageError) as wrong:
        dropout(__import__("torch").ones(3), 1.5)
    assert not isinstance(wrong.value, TypeError)
