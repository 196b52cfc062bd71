import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dropkit.experiments.engine import (
    TrainConfig,
    dataset_for,
    evaluate,
    load_final,
    parse_schedule,
    predict,
    train,
)

pytestmark = pytest.mark.slow  # trains models or runs subprocesses: make test runs it


TINY = {"train_size": 300, "hidden": 32, "batch_size": 50}


def _metrics(folder: Path) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds")  # timings aside
    return rows


class TestTrain:
    def test_resume_equals_a_straight_run(self, tmp_path) -> None:
        cfg = dict(TINY, schedule="linear:0.5,0.1,4")
        train(TrainConfig(epochs=4, **cfg), tmp_path / "straight", progress=False)
        train(TrainConfig(epochs=2, **cfg), tmp_path / "split", progress=False)
        train(TrainConfig(epochs=4, **cfg), tmp_path / "split", resume=True, progress=False)
        assert _metrics(tmp_path / "straight") == _metrics(tmp_path / "split")
        a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
        b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)

    def test_same_seed_same_numbers(self, tmp_path) -> None:
        train(TrainConfig(epochs=2, **TINY), tmp_path / "a", progress=False)
        train(TrainConfig(epochs=2, **TINY), tmp_path / "b", progress=False)
        train(TrainConfig(epochs=2, seed=1, **TINY), tmp_path / "c", progress=False)
        assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b") != _metrics(tmp_path / "c")

    def test_refuses_to_overwrite_a_run(self, tmp_path) -> None:
        train(TrainConfig(epochs=1, **TINY), tmp_path, progress=False)
        with pytest.raises(ValueError, match="already holds a run; pass --resume"):
            train(TrainConfig(epochs=1, **TINY), tmp_path, progress=False)

    def test_resume_with_another_configuration_is_refused(self, tmp_path) -> None:
        train(TrainConfig(epochs=1, **TINY), tmp_path, progress=False)
        with pytest.raises(ValueError, match=r"made with dropout=0.5, now dropout=0.3"):
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
        [("dropout", 1.0, "--dropout"), ("epochs", -1, "--epochs"), ("model", "rnn", "--model"),
         ("dataset", "x", "--dataset"), ("schedule", "wobble:1", "--schedule"),
         ("schedule", "early:2,3", "--schedule")],
    )
    def test_bad_configuration(self, field, value, message) -> None:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**{field: value}).validate()


class TestSchedules:
    def test_parse(self) -> None:
        assert parse_schedule("early:0.5,20")(19) == 0.5
        assert parse_schedule("early:0.5,20")(20) == 0.0
        assert parse_schedule("linear:0.5,0,10")(5) == pytest.approx(0.25)


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
    assert len(state["history"]) == done
    subprocess.run([*cmd, "--out", str(killed), "--resume"], check=True, timeout=300)
    subprocess.run([*cmd, "--out", str(tmp_path / "straight")], check=True, timeout=300)
    assert _metrics(killed) == _metrics(tmp_path / "straight")
