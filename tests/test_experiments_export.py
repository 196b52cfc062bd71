"""dropkit export: a trained run's Monte Carlo dropout, served by onnxruntime or torch."""

import json

import numpy as np
import pytest
import torch

from dropkit.app.cli import main
from dropkit.app.experiments import engine
from dropkit.app.experiments.engine import TrainConfig, load_final
from dropkit.app.experiments.export import run_export

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    assert main(["train", "--epochs", "1", "--train-size", "200", "--hidden", "32",
                 "--no-progress", "--out", str(folder)]) == 0
    return folder


@pytest.mark.slow
def test_onnx_and_pt2_serve_the_trained_network(trained, capsys):
    assert main(["export", str(trained), "--samples", "20"]) == 0
    assert main(["export", str(trained), "--samples", "20", "--format", "pt2"]) == 0
    out = capsys.readouterr().out
    assert "mc.onnx: 20 Monte Carlo samples per call" in out and "mc.pt2" in out
    config = TrainConfig(**json.loads((trained / "config.json").read_text()))
    data = engine.dataset_for(config)
    x = data.x_test[:16].float()
    session = ort.InferenceSession(str(trained / "mc.onnx"))
    feed = {"input": x.numpy(), "seed": np.array(3), "offset": np.array(0)}
    served = session.run(None, feed)[0]
    assert served.shape == (20, 16, 10) and not np.allclose(served[0], served[1])
    assert np.array_equal(served, session.run(None, feed)[0])  # a request replays
    program = torch.export.load(trained / "mc.pt2")
    with torch.no_grad():
        eager = program.module()(x, torch.tensor(3), torch.tensor(0)).numpy()
    assert np.allclose(served, eager, atol=1e-5)  # the same masks in both files
    # the weights are the run's: the deterministic network is the samples' limit in mean
    model = load_final(config, data, trained).eval()
    with torch.no_grad():
        plain = model(x).numpy()
    assert not np.allclose(served.mean(0), plain, atol=1e-6)  # dropout did act
    assert np.abs(served.mean(0) - plain).mean() < np.abs(served - plain).mean()


def _one_line(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_refusals_are_one_line_and_write_nothing(trained, tmp_path, capsys):
    before = sorted(p.name for p in trained.iterdir())
    assert "expected a run folder" in _one_line(["export", str(tmp_path / "none")], capsys)
    assert not (tmp_path / "none").exists()
    assert "--samples to be an int >= 1" in _one_line(
        ["export", str(trained), "--samples", "0"], capsys)
    assert "--out to name a file in an existing folder" in _one_line(
        ["export", str(trained), "--out", str(tmp_path / "no" / "m.onnx")], capsys)
    assert "--out to name a file" in _one_line(
        ["export", str(trained), "--out", str(tmp_path)], capsys)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"dataset": "mnist5k", "bogus": 1}))
    (broken / "checkpoint.pt").write_bytes(b"")
    assert "records settings this dropkit does not know (bogus)" in _one_line(
        ["export", str(broken)], capsys)
    assert sorted(p.name for p in trained.iterdir()) == before


def test_library_call_checks_before_reading(tmp_path):
    with pytest.raises(ValueError, match="format"):
        run_export(tmp_path, format="tflite")
