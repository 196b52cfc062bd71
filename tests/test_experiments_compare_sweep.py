"""compare and sweep as functions (the CLI tests run them through a subprocess)."""

from __future__ import annotations

import json

import pytest

from dropkit.app.experiments.compare import parse_rate, run_compare
from dropkit.app.experiments.engine import RunOptions
from dropkit.app.experiments.sweep import run_sweep
from dropkit.errors import UsageError

pytestmark = pytest.mark.slow  # trains models: make test runs it

TINY = {"train_size": 200, "hidden": 16, "batch_size": 50}


def _options(out, epochs: int = 1, log=lambda *_: None) -> RunOptions:
    return RunOptions(dataset="digits", epochs=epochs, out=out, progress=False, log=log,
                      overrides=TINY)


def test_compare_returns_what_it_writes(tmp_path) -> None:
    lines: list[str] = []
    payload = run_compare(_options(tmp_path, 2, lines.append), seeds=1, rates=("0", "0.2/0.5"))
    assert [r["label"] for r in payload["results"]] == ["no dropout",
                                                        "dropout 0.2 in / 0.5 hidden"]
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(
        json.dumps(payload))
    assert (tmp_path / "report.html").exists() and any("report:" in line for line in lines)
    assert payload["settings"]["train examples"] == 200


def test_compare_with_a_validation_split_plots_its_curves(tmp_path) -> None:
    options = RunOptions(dataset="digits", epochs=3, out=tmp_path, progress=False,
                         log=lambda *_: None, overrides={**TINY, "val_fraction": 0.25})
    payload = run_compare(options, seeds=1, rates=("0", "0.2/0.5"))
    for r in payload["results"]:
        assert len(r["curves"]["val_loss"]) == len(r["curves"]["val_error"]) == 3
    assert payload["settings"]["train examples"] == 150  # 200 less the validation quarter


def test_sweep_one_network_per_rate(tmp_path) -> None:
    payload = run_sweep(_options(tmp_path), rates=(0.0, 0.5), seeds=1)
    assert payload["rates"] == [0.0, 0.5] and len(payload["results"]) == 2
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_arguments_are_usage_errors_before_any_training(tmp_path) -> None:
    with pytest.raises(UsageError, match=r"^parse_rate: expected `rates`"):
        parse_rate("0.2/0.5/0.1")
    with pytest.raises(ValueError, match=r"^compare: expected `seeds` to be an int >= 1"):
        run_compare(_options(tmp_path / "c"), seeds=0)
    with pytest.raises(UsageError, match=r"^sweep: expected `rates` to be drop probabilities"):
        run_sweep(_options(tmp_path / "s"), rates=(0.2, 1.0))
    assert not (tmp_path / "c").exists() and not (tmp_path / "s").exists()
