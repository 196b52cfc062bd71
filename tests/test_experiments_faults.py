"""Fault injection: run folders that defend themselves.

Each property of a run folder, tried the way a crash, a disk or a second user breaks it:
a kill at every write point (then ``--resume`` ends where a straight run ends), every
file corrupted four ways (then the run repairs it or refuses in one line naming it, never
a traceback and never a wrong result), a full disk at every write point, changed settings
on resume, two writers. On ``dropkit train`` (validation and early stopping on, so
``best.pt`` is written) and ``dropkit active`` (rounds, ``state.json``), at tiny sizes.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dropkit.app.cli import main
from dropkit.app.experiments import io

pytestmark = pytest.mark.slow  # trains models and runs subprocesses: make test runs it

WORKER = Path(__file__).with_name("fault_worker.py")
TINY = ["--train-size", "300", "--hidden", "32", "--batch-size", "50", "--no-progress"]
TRAIN = ["train", "--epochs", "3", "--val-fraction", "0.2", "--early-stopping", "3", *TINY]
ACTIVE = ["active", "--acquisition", "bald", "--initial", "20", "--step", "10", "--budget",
          "30", "--samples", "4", "--epochs", "1", *TINY]
COMMANDS = {"train": TRAIN, "active": ACTIVE}


def _resume(argv: list[str], out: Path) -> list[str]:
    return [*argv, "--resume", "--out", str(out)]


def _outcome(out: Path) -> object:
    """What a run leaves that must not depend on how it got there (timings aside)."""
    if (out / "metrics.jsonl").exists():  # train
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    results = json.loads((out / "results.json").read_text())
    states = sorted((out / "runs").glob("*/state.json"))
    return results["curves"], [json.loads(p.read_text()) for p in states]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict[str, tuple[Path, int]]:
    """Each command run to its end once, counting its renames (every write point)."""
    done = {}
    for name, argv in COMMANDS.items():
        root = tmp_path_factory.mktemp(name)
        count = root / "count"
        subprocess.run([sys.executable, WORKER, "0", count, *_resume(argv, root / "run")],
                       check=True, capture_output=True, timeout=600)
        done[name] = (root / "run", int(count.read_text()))
    return done


def _files(out: Path) -> dict[Path, bytes]:
    """Every file of a run folder and its bytes (the lock holds the last writer's pid)."""
    return {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != io.LOCK}


def _one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_kill_at_every_write_point_then_resume_ends_as_a_straight_run(
        command, straight, tmp_path) -> None:
    reference, writes = straight[command]
    assert writes >= 8, "too few write points: the run did not do what the test means"
    for point in range(1, writes + 1):
        out = tmp_path / f"killed-at-{point}"
        killed = subprocess.run([sys.executable, WORKER, str(point), tmp_path / "n",
                                 *_resume(COMMANDS[command], out)], capture_output=True,
                                timeout=600)
        assert killed.returncode == 137, (point, killed.stderr[-2000:])
        assert main(_resume(COMMANDS[command], out)) == 0, point
        assert _outcome(out) == _outcome(reference), f"killed before rename {point}"


CORRUPTIONS = {
    "a flipped byte": lambda b: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF])
    + b[len(b) // 2 + 1 :],
    "truncated": lambda b: b[: len(b) // 2],
    "empty": lambda b: b"",
    "garbage": lambda b: b"\x00not a dropkit file\xff" * 8,
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_file_corrupted_is_repaired_or_refused_by_name(command, straight, tmp_path,
                                                            capsys) -> None:
    reference, _ = straight[command]
    files = [p.relative_to(reference) for p in sorted(reference.rglob("*")) if p.is_file()]
    cases = refused = 0
    for rel in files:
        for how, corrupt in CORRUPTIONS.items():
            out = tmp_path / "case"
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(reference, out)
            (out / rel).write_bytes(corrupt((out / rel).read_bytes()))
            capsys.readouterr()
            code = main(_resume(COMMANDS[command], out))
            err = capsys.readouterr().err
            cases += 1
            if code == 0:  # repaired (an output rewritten) or not needed: the same result
                assert _outcome(out) == _outcome(reference), (str(rel), how)
            else:
                refused += 1
                assert code == 2 and _one_line(err), (str(rel), how, err)
                assert str(rel.name) in err and "start afresh" in err, (str(rel), how, err)
    # the files that define the run are never trusted when damaged
    assert refused >= 4 * sum(rel.name in ("checkpoint.pt", "best.pt", "settings.json",
                                           "state.json") and rel.parent == Path(".")
                              or rel.name == "state.json" for rel in files)
    assert cases == 4 * len(files)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_full_disk_at_every_write_point_is_one_line_and_loses_nothing(
        command, straight, tmp_path, capsys, monkeypatch) -> None:
    reference, writes = straight[command]
    for point in range(1, writes + 1):
        out = tmp_path / f"full-at-{point}"
        def fsync(fd: int, at: int = point, seen: list[int] = [0]) -> None:  # noqa: B006
            seen[0] += 1  # one counter per point: the default list is made once per def
            if seen[0] == at:
                raise OSError(errno.ENOSPC, "No space left on device")

        with monkeypatch.context() as m:
            m.setattr(io.os, "fsync", fsync)
            capsys.readouterr()
            code = main(_resume(COMMANDS[command], out))
        err = capsys.readouterr().err
        assert code == 1 and _one_line(err), (point, err)
        assert "no space left on the device writing" in err and "nothing written is lost" in err
        assert not list(out.rglob("*.tmp")), point  # the half-written file is gone
        assert main(_resume(COMMANDS[command], out)) == 0  # space freed: it continues
        assert _outcome(out) == _outcome(reference), f"disk full at write {point}"


CHANGED = {
    "train": [["--dropout", "0.3"], ["--input-dropout", "0.1"], ["--seed", "1"],
              ["--lr", "0.01"], ["--hidden", "16"], ["--batch-size", "25"],
              ["--train-size", "200"], ["--val-fraction", "0.1"], ["--early-stopping", "2"],
              ["--schedule", "early:0.5,1"], ["--augment", "shift:1"], ["--backend", "seeded"],
              ["--model", "cnn"], ["--min-delta", "0.1"], ["--rdrop", "0.5"]],
    "active": [["--step", "5"], ["--initial", "30"], ["--samples", "8"], ["--consistent"],
               ["--train-size", "200"], ["--dropout", "0.3"], ["--hidden", "16"],
               ["--lr", "0.05"], ["--batch-size", "25"], ["--candidate-samples", "6"],
               ["--model", "cnn"], ["--val-fraction", "0.1"]],
}


def _with(argv: list[str], change: list[str]) -> list[str]:
    """``argv`` with the flag ``change[0]`` set to ``change[1:]`` (replaced or added)."""
    flag = change[0]
    if flag in argv:
        i = argv.index(flag)
        return [*argv[:i], *change, *argv[i + 2 :]]
    return [*argv, *change]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_resume_with_changed_settings_is_refused_naming_the_flag(command, straight, tmp_path,
                                                                 capsys) -> None:
    reference, _ = straight[command]
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    before = _files(out)
    for change in CHANGED[command]:
        capsys.readouterr()
        code = main(_resume(_with(COMMANDS[command], change), out))
        err = capsys.readouterr().err
        assert code == 2 and _one_line(err), (change, err)
        assert change[0] in err, (change, err)
    assert _files(out) == before  # refused before anything was written


def test_active_may_grow_its_budget_on_resume(straight, tmp_path) -> None:
    reference, _ = straight["active"]
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    assert main(_resume(_with(ACTIVE, ["--budget", "40"]), out)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["labels"] == [20, 30, 40]
    assert results["curves"]["bald"][0][:2] == _outcome(reference)[0]["bald"][0]


def test_train_in_another_command_s_folder_is_refused(straight, tmp_path, capsys) -> None:
    reference, _ = straight["active"]
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    code = main([*TRAIN, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and _one_line(err) and "holds a run of `dropkit active`" in err
