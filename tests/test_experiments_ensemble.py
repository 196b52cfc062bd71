"""dropkit ensemble: the members' mean, the scores, the comparison end to end."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dropkit import uncertainty as U
from dropkit.app.experiments.engine import RunOptions
from dropkit.app.experiments.ensemble import ensemble_probs, run_ensemble, scores
from dropkit.errors import UsageError

TINY = {"train_size": 300, "hidden": 32, "batch_size": 50}


def test_the_ensemble_predicts_the_mean_of_its_members_probabilities() -> None:
    torch.manual_seed(0)
    members = [nn.Linear(5, 3) for _ in range(4)]
    x = torch.randn(7, 5)
    expected = sum(m(x).softmax(-1) for m in members) / 4
    assert torch.allclose(ensemble_probs(members, x), expected, atol=1e-7)


def test_scores_are_the_uncertainty_module_s() -> None:
    probs = torch.softmax(torch.randn(50, 4, generator=torch.Generator().manual_seed(1)), -1)
    y = torch.randint(0, 4, (50,), generator=torch.Generator().manual_seed(2))
    s = scores(probs, y)
    assert s["nll"] == U.nll(probs, y).item() and s["ece"] == U.ece(probs, y).ece
    assert s["error"] == (probs.argmax(-1) != y).double().mean().item()


@pytest.mark.slow
def test_run_ensemble_end_to_end(tmp_path) -> None:
    options = RunOptions(epochs=2, out=tmp_path, progress=False, log=lambda *_: None,
                         overrides=TINY)
    payload = run_ensemble(options, members=3)
    results = payload["results"]
    assert list(results) == ["ensemble", "dropout, weight scaling", "dropout, MC 3 passes"]
    assert [r["forward_passes"] for r in results.values()] == [3, 1, 3]
    assert results["ensemble"]["parameters"] == 3 * results["dropout, weight scaling"][
        "parameters"]
    assert json.loads((tmp_path / "results.json").read_text()) == payload
    assert (tmp_path / "report.html").exists() and (tmp_path / "reliability.png").exists()
    for k in range(3):  # members are seeds 0..2, each resumable in its own folder
        assert (tmp_path / "runs" / f"member-seed{k}" / "checkpoint.pt").exists()


def test_bad_members_is_refused_before_training(tmp_path) -> None:
    with pytest.raises(UsageError, match="expected `members` to be an int >= 2"):
        run_ensemble(RunOptions(out=tmp_path, log=lambda *_: None), members=1)
    assert not (tmp_path / "runs").exists()
