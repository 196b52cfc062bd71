import subprocess
import sys

import pytest

from dropkit.cli import main


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
            (["demo", "--seed", "-1"], "expected seed >= 0, got -1"),
            (["demo", "--seed", "x"], "expected an integer seed, got 'x'"),
            (["bogus"], "invalid choice: 'bogus'"),
            ([], "required: COMMAND"),
        ],
    )
    def test_bad_arguments_exit_2_with_one_line(self, argv, message, capsys) -> None:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err

    def test_help(self, capsys) -> None:
        with pytest.raises(SystemExit) as exc:
            main(["demo", "--help"])
        assert exc.value.code == 0
        assert "--seed" in capsys.readouterr().out
