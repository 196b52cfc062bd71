"""Each command on tiny settings, and bad input: one line, exit 2, no traceback."""

import json
import subprocess
import sys

import pytest

from dropkit.app.cli import main

pytestmark = pytest.mark.slow  # trains models or runs subprocesses: make test runs it


TINY = ["--train-size", "300", "--hidden", "32", "--batch-size", "50", "--no-progress"]


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dropkit", *argv], capture_output=True,
                          text=True, timeout=600)


def test_compare_writes_table_results_plots_and_report(tmp_path) -> None:
    out = tmp_path / "cmp"
    proc = _run("compare", "--epochs", "2", "--seeds", "2", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "configuration" in proc.stdout and "gap (test - train) %" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    labels = [r["label"] for r in results["results"]]
    assert labels == ["no dropout", "dropout 0.2 in / 0.5 hidden"]
    assert all(len(r["test_error"]) == 2 for r in results["results"])
    for name in ("error_curves.png", "loss_curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "Reading" in html
    # running it again continues: nothing is retrained, the numbers are the same
    again = _run("compare", "--epochs", "2", "--seeds", "2", "--out", str(out), *TINY)
    assert json.loads((out / "results.json").read_text())["results"] == results["results"]
    assert again.returncode == 0


def test_sweep(tmp_path) -> None:
    out = tmp_path / "sweep"
    proc = _run("sweep", "--rates", "0", "0.5", "--epochs", "1", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["rates"] == [0.0, 0.5]
    assert (out / "sweep.png").exists() and (out / "report.html").exists()


def test_uncertainty(tmp_path) -> None:
    out = tmp_path / "unc"
    proc = _run("uncertainty", "--epochs", "2", "--samples", "8", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    assert set(metrics["auroc"]) == {"rotated 90°", "uniform noise"}
    assert 0 <= metrics["ece_mc"] <= 1 and "8" in metrics["error_vs_k"]
    for name in ("reliability.png", "uncertainty_histograms.png", "error_vs_samples.png"):
        assert (out / name).exists()


def test_train_writes_its_folder(tmp_path) -> None:
    out = tmp_path / "t"
    proc = _run("train", "--epochs", "1", "--schedule", "early:0.3,1", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "checkpoint.pt",
                                               "curves.png"}


def test_train_with_validation_early_stopping_and_augmentation(tmp_path) -> None:
    out = tmp_path / "v"
    proc = _run("train", "--epochs", "3", "--val-fraction", "0.2", "--early-stopping", "2",
                "--min-delta", "0.001", "--augment", "shift:2", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all({"val_loss", "val_error", "best_epoch", "stopped"} <= set(r) for r in rows)
    assert (out / "best.pt").exists() and (out / "curves.png").exists()
    config = json.loads((out / "config.json").read_text())
    assert (config["val_fraction"], config["early_stopping"], config["augment"]) == (
        0.2, 2, "shift:2")


def test_train_with_rdrop_and_layerdrop(tmp_path) -> None:
    out = tmp_path / "r"
    proc = _run("train", "--epochs", "1", "--model", "resmlp", "--rdrop", "0.5",
                "--layerdrop", "0.2", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert (config["model"], config["rdrop"], config["layerdrop"]) == ("resmlp", 0.5, 0.2)


def test_train_on_the_seeded_backend_resumes(tmp_path) -> None:
    out = tmp_path / "s"
    for epochs in ("1", "2"):
        proc = _run("train", "--epochs", epochs, "--backend", "seeded", "--resume", "--out",
                    str(out), *TINY)
        assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "config.json").read_text())["backend"] == "seeded"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "--dataset", "cifar"], "invalid choice: 'cifar'"),
        (["train", "--epochs", "0"], "expected --epochs to be an int >= 1, got --epochs 0"),
        (["train", "--epochs", "-3"], "expected --epochs to be an int >= 1, got --epochs -3"),
        (["compare", "--seeds", "0"], "expected --seeds to be an int >= 1, got --seeds 0"),
        (["train", "--dropout", "1.5"],
         "expected --dropout to be a drop probability in [0, 1), got --dropout 1.5"),
        (["compare", "--rates", "0.2/0.5/0.1"], "expected --rates as P or INPUT/HIDDEN"),
        (["train", "--schedule", "wobble:1", "--epochs", "1"], "expected --schedule as NAME:ARGS"),
        (["uncertainty", "--dataset", "boston", "--epochs", "1"],
         "--dataset must be a classification set"),
        (["train", "--dataset", "mnist", "--data-root", "/nonexistent"], "is missing"),
        (["train", "--backend", "triton"], "invalid choice: 'triton'"),
        (["ensemble", "--members", "1"], "expected --members to be an int >= 2, got --members 1"),
        (["active", "--acquisition", "guess"], "invalid choice: 'guess'"),
        (["active", "--budget", "5", "--epochs", "1"],
         "expected --budget >= --initial (20), got --budget 5"),
        (["ensemble", "--dataset", "boston", "--epochs", "1"],
         "--dataset must be a classification set"),
        (["train", "--val-fraction", "0.9"],
         "expected --val-fraction to be a fraction of the training split in [0, 0.5]"),
        (["train", "--early-stopping", "0"],
         "expected --early-stopping to be None or a patience, an int >= 1"),
        (["train", "--early-stopping", "3", "--epochs", "1"],
         "--early-stopping to be None unless --val-fraction > 0"),
        (["train", "--min-delta", "-1"],
         "expected --min-delta to be a finite number >= 0, got --min-delta -1.0"),
        (["train", "--augment", "flip:1", "--epochs", "1"], "expected --augment as shift:K"),
        (["train", "--layerdrop", "0.2", "--epochs", "1"],
         "expected --layerdrop to be 0 unless --model is 'resmlp'"),
        (["train", "--rdrop", "-1"],
         "expected --rdrop to be R-Drop's alpha, a finite number >= 0, got --rdrop -1.0"),
        # accepted silently or a traceback before (the hostile-user sweep of issue 31)
        (["train", "--lr", "inf"], "expected --lr to be a finite learning rate > 0, got --lr inf"),
        (["train", "--min-delta", "inf"],
         "expected --min-delta to be a finite number >= 0, got --min-delta inf"),
        (["train", "--rdrop", "inf"],
         "expected --rdrop to be R-Drop's alpha, a finite number >= 0, got --rdrop inf"),
        (["train", "--seed", "4611686018427387904", "--epochs", "1"],
         "expected --seed to be an int in [0, 2**32)"),
        (["train", "--schedule", "early:0.5,2.9", "--epochs", "1"],
         "expected a whole number of steps, got 2.9"),
        (["train", "--schedule", "early:0.5,inf", "--epochs", "1"],
         "expected a whole number of steps, got inf"),
        (["train", "--augment", "shift:nan", "--epochs", "1"],
         "a shift is a whole number of pixels in [1, 8]"),
        (["train", "--train-size", "5000", "--epochs", "1"],
         "expected --train-size <= 4000 (the training examples of mnist5k)"),
        (["train", "--early-stopping", "1", "--val-fraction", "0.1", "--train-size", "4",
          "--epochs", "1"], "leaves no validation example"),
        (["train", "--dataset", "boston", "--model", "cnn", "--epochs", "1"],
         "expected --model 'mlp', got 'cnn'"),
        (["active", "--train-size", "5000", "--epochs", "1"], "expected --train-size <= 4000"),
        (["active", "--initial", "5000", "--budget", "5000", "--epochs", "1"],
         "expected --budget <= 4000 (the training examples there are to label)"),
        (["active", "--train-size", "50", "--budget", "60", "--epochs", "1"],
         "expected --budget <= 50"),
        (["train", "--data-root", "/tmp", "--epochs", "1"],
         "expected --data-root to be unset unless --dataset is one of mnist, fashion-mnist"),
        (["sweep", "--download", "--epochs", "1"], "expected --download to be unset unless"),
        (["uncertainty", "--samples", "1000000000", "--epochs", "1"],
         "keeping 1,000,000,000 samples of the test set needs about"),
        (["active", "--samples", "1000000000", "--epochs", "1"], "expected a smaller --samples"),
        (["uncertainty", "--dropout", "0", "--input-dropout", "0", "--epochs", "1"],
         "Monte Carlo dropout samples nothing in a network without dropout"),
        (["ensemble", "--dropout", "0", "--input-dropout", "0", "--epochs", "1"],
         "expected --dropout or --input-dropout > 0"),
        (["active", "--dropout", "0", "--epochs", "1"], "expected --dropout > 0, got --dropout 0"),
        (["train", "--hidden", "100000000", "--epochs", "1"], "expected a smaller --hidden"),
        (["compare", "--hidden", "100000000", "--epochs", "1"], "expected a smaller --hidden"),
        (["active", "--hidden", "100000000", "--epochs", "1"], "expected a smaller --hidden"),
        *[(["train", "--schedule", spec, "--epochs", "1"], "--schedule")
          for spec in ("", "early", "early:", "early:a,b", "linear:0.5,0,-3", "early:1.5,3",
                       "early:nan,3", "early:0.5,3,4", "constant:2")],
        *[(["train", "--augment", spec, "--epochs", "1"], "--augment")
          for spec in ("shift", "shift:0", "shift:9", "rotate:-1", "rotate:nan", "rotate:inf",
                       "shift:2+shift:2", "shift:2+", "+")],
        *[(["compare", "--rates", spec, "--epochs", "1"], "--rates")
          for spec in ("x", "0.5/", "/0.5", "1.5", "-0.1", "nan", "0.2/inf", "")],
        (["train", "--augment", "shift:2", "--dataset", "boston", "--epochs", "1"],
         "--augment moves images, and data set 'boston' has none"),
    ],
)
def test_bad_input_is_one_line(argv, message, capsys, tmp_path) -> None:
    try:
        code = main([*argv, "--out", str(tmp_path / "o"), "--no-progress"])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # refused before any work: no folder left


@pytest.mark.parametrize("argv, message", [
    (["bogus-claim"], "unknown claim(s) ['bogus-claim']"),
    (["mask-statistics", "--docs", "/proc/none/page.md"], "cannot write to --docs '/proc/none'"),
    (["mask-statistics", "--docs", "."], "expected --docs to name a file, got the folder"),
])
def test_reproduce_refuses_before_any_claim_runs(argv, message, capsys, tmp_path) -> None:
    code = main(["reproduce", *argv, "--quick", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "o" / "mask-statistics").exists()  # no claim ran


def test_an_empty_out_is_refused(capsys) -> None:
    assert main(["train", "--epochs", "1", "--out", ""]) == 2
    assert "expected --out to name a folder, got ''" in capsys.readouterr().err


def test_unwritable_out_dir(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["train", "--epochs", "1", "--out", str(blocker / "sub"), *TINY])
    assert code == 2
    assert "cannot write to --out" in capsys.readouterr().err
