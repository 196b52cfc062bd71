"""dropkit active: the protocol's pieces, a resumable run, bad arguments."""

from __future__ import annotations

import json

import pytest
import torch

from dropkit.app.experiments.active import (
    ACTIVE_LR,
    acquire,
    initial_labels,
    read_state,
    run_active,
)
from dropkit.app.experiments.engine import RunOptions
from dropkit.errors import UsageError

TINY = {"hidden": 32, "batch_size": 10}


def _options(out, epochs: int = 2) -> RunOptions:
    return RunOptions(epochs=epochs, out=out, progress=False, log=lambda *_: None,
                      overrides=TINY)


def test_initial_labels_are_balanced_and_seeded() -> None:
    y = torch.arange(100) % 10
    a = initial_labels(y, 20, 10, seed=3)
    assert len(a) == len(set(a)) == 20
    assert torch.bincount(y[torch.tensor(a)], minlength=10).tolist() == [2] * 10
    assert a == initial_labels(y, 20, 10, seed=3) != initial_labels(y, 20, 10, seed=4)


def test_acquisitions_pick_distinct_points_reproducibly() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(),
                                torch.nn.Dropout(0.5), torch.nn.Linear(16, 3)).eval()
    pool = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    for name in ("random", "bald", "max-entropy", "variation-ratio", "mean-std",
                 "batchbald", "power-bald"):
        picks = acquire(name, model, pool, 5, 6, seed=2)
        assert len(set(picks)) == 5 and all(0 <= p < 40 for p in picks)
        assert picks == acquire(name, model, pool, 5, 6, seed=2)


@pytest.mark.slow
def test_a_resumed_run_equals_a_straight_one(tmp_path, capsys) -> None:
    kwargs = dict(acquisitions=("bald", "random"), initial=20, step=10, samples=4)
    straight = run_active(_options(tmp_path / "a"), budget=40, **kwargs)
    run_active(_options(tmp_path / "b"), budget=30, **kwargs)
    with pytest.raises(UsageError, match="already holds a run; set `resume`"):
        run_active(_options(tmp_path / "b"), budget=40, **kwargs)
    resumed = run_active(_options(tmp_path / "b"), budget=40, resume=True, **kwargs)
    assert straight["labels"] == resumed["labels"] == [20, 30, 40]
    assert straight["curves"] == resumed["curves"]
    saved = json.loads((tmp_path / "b" / "runs" / "bald-seed0" / "state.json").read_text())
    assert len(saved["labelled"]) == 40 and len(set(saved["labelled"])) == 40
    assert (tmp_path / "a" / "active.png").exists() and (tmp_path / "a" / "report.html").exists()
    # each round trains at ACTIVE_LR unless a learning rate is given
    assert straight["settings"]["lr"] == ACTIVE_LR != 0.05
    options = RunOptions(epochs=1, out=tmp_path / "c", progress=True, log=lambda *_: None,
                         overrides={**TINY, "lr": 0.3})
    assert run_active(options, budget=20, **kwargs)["settings"]["lr"] == 0.3
    assert "round" in capsys.readouterr().err  # a progress bar over the rounds


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"acquisitions": ("bald", "guess")}, "expected `acquisitions` among random, bald"),
    ({"budget": 5}, r"expected `budget` >= `initial` \(20\), got budget=5"),
    ({"step": 0}, "expected `step` to be an int >= 1"),
    ({"initial": 5000, "budget": 5000}, r"expected `budget` <= 4000 \(the training examples "
                                        r"there are to label\), got budget=5000"),
    ({"dropout": 0.0}, r"Monte Carlo dropout samples nothing .* expected `dropout` > 0"),
    ({"samples": 10**9}, r"^active: scoring 256 pool points with 1,000,000,000 samples "
                         r"needs about .* GiB of memory"),
])
def test_bad_arguments_before_any_training(tmp_path, kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        run_active(_options(tmp_path), **kwargs)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_resume_refuses_changed_settings_and_another_command_s_folder(tmp_path) -> None:
    from dropkit.app.experiments.compare import run_compare

    kwargs = dict(acquisitions=("random",), initial=20, step=10, samples=4)
    run_active(_options(tmp_path / "a", epochs=1), budget=20, **kwargs)
    results = (tmp_path / "a" / "results.json").read_text()
    with pytest.raises(UsageError, match=r"cannot `resume` a run made with step=10 with "
                                         r"step=15"):
        run_active(_options(tmp_path / "a", epochs=1), budget=40, resume=True,
                   **{**kwargs, "step": 15})
    with pytest.raises(UsageError, match=r"made with dropout=0.5 with dropout=0.3"):
        run_active(_options(tmp_path / "a", epochs=1), budget=20, resume=True, dropout=0.3,
                   **kwargs)
    assert (tmp_path / "a" / "results.json").read_text() == results  # nothing rewritten
    # more labels and another acquisition extend the run
    grown = run_active(_options(tmp_path / "a", epochs=1), budget=30, resume=True,
                       **{**kwargs, "acquisitions": ("random", "bald")})
    assert grown["labels"] == [20, 30] and set(grown["curves"]) == {"random", "bald"}
    # a compare folder is compare's
    run_compare(_options(tmp_path / "c", epochs=1), seeds=1, rates=("0.5",))
    with pytest.raises(UsageError, match=r"holds a run of `dropkit compare`"):
        run_active(_options(tmp_path / "c", epochs=1), budget=20, resume=True, **kwargs)
    with pytest.raises(UsageError, match=r"cannot `resume` a run made with "
                                         r"rates=\['0.5'\] with rates=\['0.3'\]"):
        run_compare(_options(tmp_path / "c", epochs=1), seeds=1, rates=("0.3",))


def test_train_size_is_the_pool(tmp_path) -> None:
    """`train_size` was accepted and ignored: the pool is the first N training examples."""
    options = RunOptions(epochs=1, out=tmp_path, progress=False, log=lambda *_: None,
                         overrides={**TINY, "train_size": 60})
    run_active(options, acquisitions=("bald",), initial=20, step=10, budget=30, samples=4)
    state = json.loads((tmp_path / "runs" / "bald-seed0" / "state.json").read_text())
    assert len(state["labelled"]) == 30 and max(state["labelled"]) < 60
    with pytest.raises(UsageError, match=r"expected `budget` <= 60"):
        run_active(RunOptions(out=tmp_path / "b", overrides={"train_size": 60}), budget=70)


class TestReadState:
    """state.json is checked against the run before a round trusts it."""

    FIRST = [3, 1, 4]

    def _write(self, tmp_path, state) -> object:
        path = tmp_path / "state.json"
        path.write_text(json.dumps(state))
        return path

    def test_a_consistent_state_reads_back(self, tmp_path) -> None:
        state = {"labelled": [3, 1, 4, 9, 8], "rounds": [{"labels": 3, "test_error": 0.5}]}
        assert read_state(self._write(tmp_path, state), self.FIRST, 2, 10) == state

    @pytest.mark.parametrize(("state", "problem"), [
        ({"labelled": [3, 1, 4, -1, 8], "rounds": [{"labels": 3, "test_error": 0.5}]},
         r"an index that is not a training example in \[0, 10\)"),
        ({"labelled": [3, 1, 4, 10, 8], "rounds": [{"labels": 3, "test_error": 0.5}]},
         r"an index that is not a training example"),
        ({"labelled": [3, 1, 4, True, 8], "rounds": [{"labels": 3, "test_error": 0.5}]},
         r"an index that is not a training example"),
        ({"labelled": [3, 1, 4, 8, 8], "rounds": [{"labels": 3, "test_error": 0.5}]},
         "an index labelled twice"),
        ({"labelled": [1, 3, 4], "rounds": []}, "initial labels other than this run's seed"),
        ({"labelled": [3, 1, 4], "rounds": [{"labels": 4, "test_error": 0.5}]},
         "rounds that do not follow"),
        ({"labelled": [3, 1, 4], "rounds": [{"labels": 3, "test_error": None}]},
         "rounds that do not follow"),
        ({"labelled": [3, 1, 4, 5, 6, 7, 8], "rounds": [{"labels": 3, "test_error": 0.5}]},
         "7 labels after 1 rounds"),
        ({"labelled": "3,1,4", "rounds": []}, "no lists `labelled` and `rounds`"),
    ])
    def test_a_state_that_does_not_fit_is_named(self, tmp_path, state, problem) -> None:
        with pytest.raises(UsageError, match=rf"^active: .*state.json' holds {problem}.*start "
                                             r"afresh in another folder"):
            read_state(self._write(tmp_path, state), self.FIRST, 2, 10)
