import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dropkit.app.experiments.engine import (
    TrainConfig,
    check_fits,
    check_samples,
    dataset_for,
    evaluate,
    load_final,
    predict,
    train,
    validation_split,
)
from dropkit.errors import UsageError

pytestmark = pytest.mark.slow  # trains models or runs subprocesses: make test runs it


TINY = {"train_size": 300, "hidden": 32, "batch_size": 50}


def _metrics(folder: Path) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds")  # timings aside
    return rows


class TestTrain:
    @pytest.mark.parametrize("backend", ["torch", "seeded"])
    def test_resume_equals_a_straight_run(self, tmp_path, backend: str) -> None:
        cfg = dict(TINY, schedule="linear:0.5,0.1,4", backend=backend)
        train(TrainConfig(epochs=4, **cfg), tmp_path / "straight", progress=False)
        train(TrainConfig(epochs=2, **cfg), tmp_path / "split", progress=False)
        train(TrainConfig(epochs=4, **cfg), tmp_path / "split", resume=True, progress=False)
        assert _metrics(tmp_path / "straight") == _metrics(tmp_path / "split")
        a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
        b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        # the seeded run's masks come from the plan: (seed, step), one step per batch
        steps = 4 * (TINY["train_size"] // TINY["batch_size"])
        plan = {"seed": 0, "last_step": steps} if backend == "seeded" else None
        assert a["seed_plan"] == b["seed_plan"] == plan

    @pytest.mark.parametrize("extra", [dict(rdrop=1.0), dict(model="resmlp", layerdrop=0.3),
                                       dict(model="resmlp", layerdrop=0.3, rdrop=0.5)])
    def test_rdrop_and_layerdrop_runs_resume_exactly(self, tmp_path, extra) -> None:
        cfg = dict(TINY, **extra)
        train(TrainConfig(epochs=3, **cfg), tmp_path / "straight", progress=False)
        train(TrainConfig(epochs=1, **cfg), tmp_path / "split", progress=False)
        train(TrainConfig(epochs=3, **cfg), tmp_path / "split", resume=True, progress=False)
        assert _metrics(tmp_path / "straight") == _metrics(tmp_path / "split")
        # and the recipe changes the training: the same run without it differs
        plain = {k: v for k, v in cfg.items() if k not in ("rdrop", "layerdrop")}
        train(TrainConfig(epochs=3, **plain), tmp_path / "plain", progress=False)
        assert _metrics(tmp_path / "plain") != _metrics(tmp_path / "straight")

    def test_the_seeded_backend_trains_other_masks_than_torch(self, tmp_path) -> None:
        train(TrainConfig(epochs=1, **TINY), tmp_path / "torch", progress=False)
        train(TrainConfig(epochs=1, backend="seeded", **TINY), tmp_path / "seeded",
              progress=False)
        assert _metrics(tmp_path / "torch") != _metrics(tmp_path / "seeded")

    def test_the_validation_split_is_fixed_and_disjoint(self) -> None:
        train_idx, val_idx = validation_split(300, 0.2)
        assert len(val_idx) == 60 and len(train_idx) == 240
        assert set(train_idx.tolist()).isdisjoint(val_idx.tolist())
        assert set(train_idx.tolist()) | set(val_idx.tolist()) == set(range(300))
        again = validation_split(300, 0.2)
        assert torch.equal(again[0], train_idx) and torch.equal(again[1], val_idx)

    def test_early_stopping_keeps_the_best_epoch_and_resumes_exactly(self, tmp_path) -> None:
        cfg = dict(TINY, val_fraction=0.2, early_stopping=2, augment="shift:2", dropout=0.0,
                   input_dropout=0.0, lr=0.5)
        straight = train(TrainConfig(epochs=30, **cfg), tmp_path / "a", progress=False)
        last = straight[-1]
        assert last["stopped"] and last["epoch"] < 30  # it stopped before the budget
        assert last["epoch"] - last["best_epoch"] == 2  # patience 2
        assert all("val_loss" in r and "val_error" in r for r in straight)
        best = straight[last["best_epoch"] - 1]
        assert best["val_loss"] == min(r["val_loss"] for r in straight)
        # the kept model is the best epoch's: its validation loss is that epoch's
        config = TrainConfig(epochs=30, **cfg)
        data = dataset_for(config)
        model = load_final(config, data, tmp_path / "a")
        _, val_idx = validation_split(300, 0.2)
        loss, _ = evaluate(model, data.x_train[val_idx], data.y_train[val_idx], data)
        assert loss == pytest.approx(best["val_loss"], rel=1e-6)
        # killed after 3 epochs, resumed: the same epochs, patience and augmentation draws
        train(TrainConfig(epochs=3, **cfg), tmp_path / "b", progress=False)
        split = train(TrainConfig(epochs=30, **cfg), tmp_path / "b", resume=True,
                      progress=False)
        assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
        assert len(split) == len(straight)

    def test_augmenting_a_data_set_without_images_is_refused(self, tmp_path) -> None:
        with pytest.raises(UsageError, match="`augment` moves images, and data set 'boston'"):
            train(TrainConfig(dataset="boston", augment="shift:1", epochs=1), tmp_path,
                  progress=False)
        assert not (tmp_path / "checkpoint.pt").exists()

    def test_augmentation_is_reproducible_and_changes_training(self, tmp_path) -> None:
        for name, augment in (("a", "shift:2"), ("b", "shift:2"), ("none", None)):
            train(TrainConfig(epochs=2, augment=augment, **TINY), tmp_path / name,
                  progress=False)
        assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
        assert _metrics(tmp_path / "a") != _metrics(tmp_path / "none")

    def test_same_seed_same_numbers(self, tmp_path) -> None:
        train(TrainConfig(epochs=2, **TINY), tmp_path / "a", progress=False)
        train(TrainConfig(epochs=2, **TINY), tmp_path / "b", progress=False)
        train(TrainConfig(epochs=2, seed=1, **TINY), tmp_path / "c", progress=False)
        assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b") != _metrics(tmp_path / "c")

    def test_refuses_to_overwrite_a_run(self, tmp_path) -> None:
        train(TrainConfig(epochs=1, **TINY), tmp_path, progress=False)
        with pytest.raises(UsageError, match=r"already holds a run \(checkpoint.pt, "
                                             r"metrics.jsonl\); set `resume` to continue"):
            train(TrainConfig(epochs=1, **TINY), tmp_path, progress=False)
        (tmp_path / "checkpoint.pt").unlink()  # metrics alone are a run's too
        with pytest.raises(UsageError, match=r"already holds a run \(metrics.jsonl\)"):
            train(TrainConfig(epochs=1, **TINY), tmp_path, progress=False)

    def test_resume_with_fewer_epochs_than_done_is_refused(self, tmp_path) -> None:
        train(TrainConfig(epochs=2, **TINY), tmp_path, progress=False)
        config = (tmp_path / "config.json").read_text()
        with pytest.raises(UsageError, match=r"has done 2 epochs; resume with `epochs` >= 2, "
                                             r"got epochs=1"):
            train(TrainConfig(epochs=1, **TINY), tmp_path, resume=True, progress=False)
        assert (tmp_path / "config.json").read_text() == config  # nothing rewritten

    def test_metrics_a_kill_left_short_are_repaired_on_resume(self, tmp_path) -> None:
        """A kill between the checkpoint's rename and the metrics' (simulated by cutting
        the last line): resume rebuilds the file from the checkpoint's history."""
        train(TrainConfig(epochs=3, **TINY), tmp_path / "straight", progress=False)
        train(TrainConfig(epochs=2, **TINY), tmp_path / "cut", progress=False)
        path = tmp_path / "cut" / "metrics.jsonl"
        path.write_text(path.read_text().splitlines(keepends=True)[0])  # 1 of 2 lines
        lines: list[str] = []
        train(TrainConfig(epochs=3, **TINY), tmp_path / "cut", resume=True, progress=False,
              log=lines.append)
        assert any("metrics.jsonl repaired from the checkpoint: it held 1 of 2" in s
                   for s in lines)
        assert _metrics(tmp_path / "cut") == _metrics(tmp_path / "straight")

    def test_resume_with_another_configuration_is_refused(self, tmp_path) -> None:
        train(TrainConfig(epochs=1, **TINY), tmp_path, progress=False)
        with pytest.raises(UsageError, match=r"cannot `resume` a run made with dropout=0.5 "
                                             r"with dropout=0.3"):
            train(TrainConfig(epochs=2, dropout=0.3, **TINY), tmp_path, resume=True,
                  progress=False)

    def test_load_final_is_the_model_the_metrics_came_from(self, tmp_path) -> None:
        config = TrainConfig(epochs=2, **TINY)
        history = train(config, tmp_path, progress=False)
        data = dataset_for(config)
        model = load_final(config, data, tmp_path)
        model.train()
        _, error = evaluate(model, data.x_test, data.y_test, data)
        assert error == history[-1]["test_error"]
        assert model.training  # predict and evaluate restore the mode
        assert predict(model, data.x_test[:7], batch=3).shape == (7, 10)
        with pytest.raises(FileNotFoundError, match=r"^load_final: expected a checkpoint at"):
            load_final(config, data, tmp_path / "nothing")

    def test_cnn_on_digits_and_regression_on_boston(self, tmp_path) -> None:
        h = train(TrainConfig(dataset="digits", model="cnn", epochs=2, batch_size=64),
                  tmp_path / "cnn", progress=False)
        assert h[-1]["test_error"] < 0.5  # 10 classes: chance is 0.9
        r = train(TrainConfig(dataset="boston", epochs=3, dropout=0.05, input_dropout=0.0,
                              lr=0.01), tmp_path / "reg", progress=False)
        assert r[-1]["test_error"] > 0  # RMSE in dollars (thousands)

    @pytest.mark.parametrize(
        "field, value, message",
        [("dropout", 1.0, r"^TrainConfig: expected `dropout` to be a drop probability in "
                          r"\[0, 1\), got dropout=1.0"),
         ("epochs", 0, r"^TrainConfig: expected `epochs` to be an int >= 1"),
         ("model", "rnn", r"^TrainConfig: expected `model` to be one of mlp, cnn"),
         ("dataset", "x", r"^TrainConfig: expected `dataset` to be one of mnist5k"),
         ("backend", "auto", r"^TrainConfig: expected `backend` to be one of torch, seeded, "
                             r"got backend='auto'"),
         ("val_fraction", 0.7, r"^TrainConfig: expected `val_fraction` to be a fraction"),
         ("early_stopping", 3, r"^TrainConfig: expected `early_stopping` to be None unless "
                               r"`val_fraction` > 0"),
         ("early_stopping", 0, r"^TrainConfig: expected `early_stopping` to be None or a "
                               r"patience"),
         ("rdrop", -1.0, r"^TrainConfig: expected `rdrop` to be R-Drop's alpha"),
         ("layerdrop", 0.2, r"^TrainConfig: expected `layerdrop` to be 0 unless `model` is "
                            r"'resmlp'"),
         ("min_delta", -0.1, r"^TrainConfig: expected `min_delta` to be a finite number >= 0"),
         ("augment", "flip:1", r"^parse_augment: expected `augment` as shift:K"),
         ("schedule", "wobble:1", r"^parse_schedule: expected `schedule` as NAME:ARGS"),
         ("schedule", "early:2,3", r"^parse_schedule: `schedule` 'early:2,3': early: expected"),
         ("schedule", "early:0.5,2.9", r"expected a whole number of steps, got 2.9"),
         ("lr", float("inf"), r"^TrainConfig: expected `lr` to be a finite learning rate"),
         ("rdrop", float("inf"), r"^TrainConfig: expected `rdrop` to be R-Drop's alpha, a "
                                 r"finite number"),
         ("seed", 2**62, r"^TrainConfig: expected `seed` to be an int in \[0, 2\*\*32\)"),
         ("data_root", "/data", r"^TrainConfig: expected `data_root` to be unset unless "
                                r"`dataset` is one of mnist, fashion-mnist"),
         ("download", True, r"'mnist5k' comes with its package\), got download=True")],
    )
    def test_bad_configuration_speaks_python_not_flags(self, field, value, message) -> None:
        with pytest.raises(UsageError, match=message) as caught:
            TrainConfig(**{field: value}).validate()
        assert caught.value.argument == field


class TestCheckedLoads:
    """A checkpoint that does not fit its run is one error naming the file, never a
    traceback from load_state_dict, never a run that trains on NaN."""

    def test_weights_of_another_shape_are_named(self, tmp_path) -> None:
        config = TrainConfig(epochs=1, **TINY)
        train(config, tmp_path, progress=False)
        wider = replace(config, hidden=48)
        with pytest.raises(UsageError, match=r"checkpoint.pt' holds weights that do not fit "
                                             r"this model \(RuntimeError: Error\(s\) in loading"):
            load_final(wider, dataset_for(config), tmp_path)

    def test_non_finite_weights_are_refused_naming_lr(self, tmp_path) -> None:
        from dropkit.app.experiments.io import load_checked, save_checked

        config = TrainConfig(epochs=1, **TINY)
        train(config, tmp_path, progress=False)
        state = load_checked(tmp_path / "checkpoint.pt")
        first = next(iter(state["model"]))
        state["model"][first][0] = float("nan")  # a diverged run, faithfully checksummed
        save_checked(tmp_path / "checkpoint.pt", state)
        with pytest.raises(UsageError, match=rf"non-finite weights \({first}\): the run "
                                             r"diverged") as caught:
            train(replace(config, epochs=2), tmp_path, resume=True, progress=False)
        assert caught.value.argument == "lr"

    def test_a_damaged_best_pt_is_named_at_resume_before_any_epoch(self, tmp_path) -> None:
        config = TrainConfig(epochs=1, val_fraction=0.2, early_stopping=2, **TINY)
        train(config, tmp_path, progress=False)
        (tmp_path / "best.pt").write_bytes(b"")
        metrics = (tmp_path / "metrics.jsonl").read_text()
        with pytest.raises(UsageError, match=r"cannot read .*best.pt.*start afresh"):
            train(replace(config, epochs=3), tmp_path, resume=True, progress=False)
        assert (tmp_path / "metrics.jsonl").read_text() == metrics  # no epoch ran

    def test_a_checkpoint_of_another_structure_is_named(self, tmp_path) -> None:
        from dropkit.app.experiments.io import load_checked, save_checked

        config = TrainConfig(epochs=1, **TINY)
        train(config, tmp_path, progress=False)
        state = load_checked(tmp_path / "checkpoint.pt")
        del state["rng"]
        save_checked(tmp_path / "checkpoint.pt", state)
        with pytest.raises(UsageError, match=r"checkpoint.pt' does not fit this run "
                                             r"\(KeyError: 'rng'\); start afresh"):
            train(replace(config, epochs=2), tmp_path, resume=True, progress=False)


class TestChecksBeforeWork:
    def test_a_network_the_memory_cannot_hold_is_refused_naming_hidden(self, monkeypatch
                                                                       ) -> None:
        from dropkit.app.experiments import memory

        config = TrainConfig(**TINY)
        data = dataset_for(config)
        check_fits(config, data)  # 784-32-32-10: about 27k parameters
        monkeypatch.setattr(memory, "available_bytes", lambda: 10_000)
        with pytest.raises(UsageError, match=r"^train: training a mlp of 26,506 parameters "
                                             r"needs about .* GiB of memory and .* GiB is "
                                             r"available; expected a smaller `hidden`"):
            check_fits(config, data)

    def test_monte_carlo_without_dropout_is_refused_before_training(self) -> None:
        config = TrainConfig(dropout=0.0, input_dropout=0.0, **TINY)
        data = dataset_for(config)
        with pytest.raises(UsageError, match=r"^uncertainty: Monte Carlo dropout samples "
                                             r"nothing .* expected `dropout` or "
                                             r"`input_dropout` > 0, got dropout=0, "
                                             r"input_dropout=0"):
            check_samples(config, data, "uncertainty")
        check_samples(replace(config, input_dropout=0.2), data, "uncertainty")  # samples


def test_sigkill_mid_run_resumes_from_the_last_checkpoint(tmp_path) -> None:
    args = ["--epochs", "20", "--train-size", "4000", "--hidden", "256", "--no-progress"]
    cmd = [sys.executable, "-m", "dropkit", "train", *args]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)])
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "metrics.jsonl").exists():
        time.sleep(0.02)  # the first epoch is checkpointed: kill during the next ones
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(_metrics(killed))
    assert 1 <= done < 20, "the kill did not land mid-run; the test proved nothing"
    state = torch.load(killed / "checkpoint.pt", weights_only=True)  # loads: not torn
    # a kill between the checkpoint's rename and the metrics' leaves the metrics an epoch
    # short: the resume rebuilds them from the checkpoint
    assert len(state["history"]) in (done, done + 1)
    subprocess.run([*cmd, "--out", str(killed), "--resume"], check=True, timeout=300)
    subprocess.run([*cmd, "--out", str(tmp_path / "straight")], check=True, timeout=300)
    assert _metrics(killed) == _metrics(tmp_path / "straight")


def test_predict_restores_every_modules_mode_even_after_an_error() -> None:
    from torch import nn

    m = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5)).eval()
    m[2].train()  # a mixed state, as MC dropout leaves it
    modes = [t.training for t in m.modules()]
    x = torch.randn(4, 3)
    assert torch.equal(predict(m, x), predict(m, x))  # the dropout was in eval inside
    assert [t.training for t in m.modules()] == modes
    with pytest.raises(RuntimeError):
        predict(m, torch.randn(4, 5))  # wrong width
    assert [t.training for t in m.modules()] == modes
