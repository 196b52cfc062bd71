"""``dropkit evaluate``: the measures per method, the conditions, the run end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dropkit.app.cli import main
from dropkit.app.experiments import evaluate as E
from dropkit.app.experiments.data import load_dataset
from dropkit.app.models import MLPWithDropout
from dropkit.tools.sites import dropout_sites


def test_method_scores_of_a_certain_and_right_predictor() -> None:
    y = torch.tensor([0, 1, 2, 1])
    probs = torch.nn.functional.one_hot(y, 3).double()[None] * 0.97 + 0.01
    scores = E.method_scores(probs, y, E.temperature_of(probs, y))
    assert scores["accuracy"] == 1.0 and scores["aurc"] == 0.0
    assert math.isnan(scores["error_auroc"])  # no error to flag
    assert scores["nll"] == pytest.approx(-math.log(0.98))
    assert scores["calibrated_nll"] < scores["nll"]  # sharpened towards the right answers


def test_ood_scores_compare_every_method_and_score() -> None:
    def certain(x):
        return torch.tensor([0.9, 0.05, 0.05]).expand(1, len(x), 3)

    def confused(x):
        return torch.full((2, len(x), 3), 1 / 3)

    x_in, x_out = torch.zeros(5, 2), torch.ones(7, 2)
    probs = {"a": {"test digits": certain(x_in), "far": confused(x_out)[:1]},
             "b": {"test digits": certain(x_in).expand(2, -1, -1), "far": confused(x_out)}}
    out = E.ood_scores(probs)
    assert out["a"]["far"]["entropy"]["auroc"] == 1.0
    assert set(out["a"]["far"]) == {"max probability", "entropy"}
    assert set(out["b"]["far"]) == {"max probability", "entropy", "mutual information"}


def test_the_last_layer_copy_samples_only_its_last_site() -> None:
    net = MLPWithDropout(784, 16, 10, dropout_rate=0.5, input_dropout=0.2)
    x = torch.rand(2, 784)
    last = E._last_layer_only(net, x)
    rates = [s.rate for s in dropout_sites(last, example_input=x)]
    assert rates[:-1] == [0.0] * (len(rates) - 1) and rates[-1] == 0.5
    assert [s.rate for s in dropout_sites(net, example_input=x)][0] == 0.2  # untouched


def test_the_last_layer_is_the_last_to_run_not_the_last_registered() -> None:
    from dropkit.nn import Dropout

    class Backwards(torch.nn.Module):  # registers its dropouts in the reverse of their use
        def __init__(self) -> None:
            super().__init__()
            self.late = Dropout(0.3)
            self.early = Dropout(0.6)
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.late(self.fc(self.early(x)))

    net = Backwards()
    x = torch.rand(2, 4)
    rates = {s.name: s.rate for s in dropout_sites(E._last_layer_only(net, x), example_input=x)}
    assert rates == {"late": 0.3, "early": 0.0}


def test_conditions_cover_every_shift_from_the_clean_digits() -> None:
    data = load_dataset("mnist5k")
    found = E.conditions(data, quick=True, seed=0)
    assert set(found) == {"rotate", "translate", "gaussian-noise", "blur", "contrast"}
    for levels in found.values():
        assert torch.equal(levels[0], data.x_test)  # level 0 is the clean test set
        assert all(x.shape == data.x_test.shape for x in levels.values())


@pytest.mark.parametrize("argv, message", [
    (["--members", "1"], "expected --members to be an int >= 2, got --members 1"),
    (["--samples", "1"], "expected --samples to be an int >= 2"),
    (["--val-fraction", "0.2"], "--val-fraction is fixed at 0.1"),
    (["--dataset", "boston"], "--dataset must be a set of images to classify"),
    (["--dropout", "0", "--input-dropout", "0"], "Monte Carlo dropout samples nothing"),
])
def test_bad_input_is_refused_before_any_work(argv, message, tmp_path, capsys) -> None:
    assert main(["evaluate", *argv, "--epochs", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "runs").exists()


@pytest.mark.slow
def test_a_quick_run_end_to_end_and_resumed(tmp_path, capsys) -> None:
    argv = ["evaluate", "--quick", "--epochs", "1", "--train-size", "600", "--members", "2",
            "--samples", "4", "--out", str(tmp_path / "ev"), "--no-progress"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert set(results["shift"]) == set(E.METHODS) == set(results["ood"])
    assert set(results["shift"]["mc-dropout"]["rotate"]) == {"0", "90", "180"}
    for method in E.METHODS:
        clean = results["shift"][method]["rotate"]["0"]
        assert 0 <= clean["accuracy"] <= 1 and 0 <= clean["ece"] <= 1
        assert 0 <= results["ood"][method]["noise"]["entropy"]["auroc"] <= 1
    for name in ("rotate.png", "translate.png", "entropy.png", "report.html"):
        assert (tmp_path / "ev" / name).stat().st_size > 0
    assert "starting a new run" in first
    held = results["held_out"]["ensemble"]  # trained on digits 0-4, flagging 5-9
    assert set(held) == {"auroc", "aupr_in", "aupr_out", "fpr95"}
    assert (tmp_path / "ev" / "held-out" / "runs" / "member-seed1").is_dir()
    assert main([*argv, "--no-held-out"]) == 0  # resumed: every network is trained already
    assert "starting a new run" not in capsys.readouterr().out
