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
