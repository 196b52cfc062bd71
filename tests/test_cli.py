import argparse
import errno
import subprocess
import sys

import pytest

from dropkit.app import cli
from dropkit.app.cli import build_parser, main

# Values no typed flag of the command line accepts: not numbers, empty, NaN, negative,
# infinite (1e400 overflows to inf), and a word no choice list holds.
BAD_VALUES = ["abc", "", "nan", "-1", "-inf", "1e400", "0x10", "bogus"]


def _typed_flags() -> list[tuple[str, str]]:
    """(command, flag) for every flag whose value the parser checks (a type or choices)."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(name, action.option_strings[-1])
            for name, sub in commands.choices.items() for action in sub._actions
            if action.option_strings and action.nargs != 0
            and (action.type is not None or action.choices is not None)]


FLAGS = _typed_flags()


class TestCli:
    @pytest.mark.slow
    def test_demo_runs_as_a_module(self) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "dropkit", "demo", "--seed", "1"],
            capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert "4-neuron layer" in proc.stdout
        assert "eval mode:  0.0000" in proc.stdout

    @pytest.mark.parametrize(
        "argv, message",
        [
            (["demo", "--seed", "-1"], "demo: expected --seed to be an int in [0, "),
            (["demo", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
            (["bogus"], "invalid choice: 'bogus'"),
            ([], "required: COMMAND"),
        ],
    )
    def test_bad_arguments_exit_2_with_one_line(self, argv, message, capsys) -> None:
        assert _exit_code(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err

    def test_help(self, capsys) -> None:
        with pytest.raises(SystemExit) as exc:
            main(["demo", "--help"])
        assert exc.value.code == 0
        assert "--seed" in capsys.readouterr().out


@pytest.fixture
def no_work(monkeypatch):
    """Loading data is the first work a command does: here it fails the test."""
    from dropkit.app.experiments import engine

    def started(config):
        raise AssertionError(f"work started on {config.dataset} despite a bad argument")

    monkeypatch.setattr(engine, "dataset_for", started)


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit:  # the parser's own refusal
        return int(exit.code or 0)


def _fake_run(folder) -> str:
    """A folder with a valid configuration and a checkpoint file, as `dropkit train` leaves."""
    import dataclasses
    import json

    from dropkit.app.experiments.engine import TrainConfig

    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(TrainConfig())))
    (folder / "checkpoint.pt").write_bytes(b"")
    return str(folder)


@pytest.mark.parametrize("command, flag", FLAGS)
def test_every_typed_flag_refuses_every_bad_value_in_one_line(command, flag, capsys, no_work,
                                                              tmp_path) -> None:
    """The sweep a hostile user runs: every checked flag of every command, every bad
    value, refused in one line before any work and leaving no folder. The parser converts
    text; the bounds are the library's checks, so a value both let through would start
    work (and fail the test) or exit 0."""
    assert len(FLAGS) >= 60  # the sweep covers the command line, not a corner of it
    out = tmp_path / "run"
    # export reads a trained run: a folder that looks like one, so only the flag can stop it
    first = [_fake_run(tmp_path / "trained")] if command == "export" else []
    for value in BAD_VALUES:
        argv = [command, *first, flag, value] + (
            ["--out", str(out)] if command != "demo" else [])
        code = _exit_code(argv)
        err = capsys.readouterr().err
        assert code == 2, (command, flag, value, err)
        assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err, err
        assert not out.exists(), (command, flag, value)


class TestOutOfResources:
    """A full disk or an allocation the machine cannot make: one line, exit 1."""

    @pytest.mark.parametrize("error, message", [
        (OSError(errno.ENOSPC, "No space left on device", "runs/a/checkpoint.pt"),
         "no space left on the device writing runs/a/checkpoint.pt"),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't "
                      "allocate memory: you tried to allocate 400000000000 bytes"),
         "out of memory: use a smaller --hidden"),
        (MemoryError(), "out of memory"),
    ])
    def test_one_line_and_how_to_continue(self, error, message, capsys, monkeypatch,
                                          tmp_path) -> None:
        def run(args) -> None:
            raise error

        monkeypatch.setattr(cli, "_run", run)
        assert main(["train", "--out", str(tmp_path / "o")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
        assert "nothing written is lost: rerun with --resume to continue" in err
        assert main(["compare", "--out", str(tmp_path / "c")]) == 1
        assert "rerun the same command to continue" in capsys.readouterr().err

    def test_any_other_error_is_a_bug_with_its_traceback(self, monkeypatch, tmp_path) -> None:
        def run(args) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(cli, "_run", run)
        with pytest.raises(RuntimeError, match="a bug"):
            main(["train", "--out", str(tmp_path / "o")])


class TestImportErrors:
    """A missing optional package is bad input (one line); dropkit's own import that
    fails is a bug and keeps its traceback."""

    def test_a_missing_extra_is_one_line(self, monkeypatch, capsys, tmp_path) -> None:
        def run(args) -> None:
            raise ModuleNotFoundError("No module named 'mlxtend'", name="mlxtend")

        monkeypatch.setattr(cli, "_run", run)
        assert main(["compare", "--out", str(tmp_path / "c")]) == 2
        assert "No module named 'mlxtend'" in capsys.readouterr().err

    @pytest.mark.parametrize("error", [
        ModuleNotFoundError("No module named 'dropkit.nothing'", name="dropkit.nothing"),
        ImportError("cannot import name 'x' from 'dropkit.app.cli'")])
    def test_a_failing_import_of_dropkit_s_own_is_a_bug(self, error, monkeypatch,
                                                         tmp_path) -> None:
        def run(args) -> None:
            raise error

        monkeypatch.setattr(cli, "_run", run)
        with pytest.raises(ImportError):
            main(["compare", "--out", str(tmp_path / "c")])
