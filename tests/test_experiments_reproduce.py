import json

import pytest

from dropkit.cli import main
from dropkit.experiments.reproduce import (
    CLAIMS,
    DIRECTION,
    NOT,
    REPRODUCED,
    run_reproduce,
    write_docs,
)

pytestmark = pytest.mark.slow  # trains models or runs subprocesses: make test runs it


FAST = [c.name for c in CLAIMS if c.fast]


def test_list_has_one_line_per_claim(capsys) -> None:
    assert main(["reproduce", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == [c.name for c in CLAIMS]
    assert len(CLAIMS) >= 10


def test_quick_run_of_the_fast_claims(tmp_path) -> None:
    docs = tmp_path / "REPRODUCTIONS.md"
    results = run_reproduce(FAST, quick=True, out=tmp_path / "out", docs=docs,
                            log=lambda *_: None)
    assert [r.claim for r in results] == FAST
    for r in results:
        assert r.verdict in (REPRODUCED, DIRECTION, NOT)
        assert r.dropkit and r.published and r.why and r.setting
        saved = json.loads((tmp_path / "out" / r.claim / "result.json").read_text())
        assert saved["verdict"] == r.verdict and saved["mode"] == "quick"
        assert r.figure and open(r.figure, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    by_name = {r.claim: r for r in results}
    assert by_name["lesson-mask"].verdict == REPRODUCED  # exact bounds, fixed seed
    gap = by_name["mnist5k-gap"]
    paired = gap.numbers["paired"]  # the same difference, recomputed from the checkpoints
    errors = {k: sum(v := gap.numbers[k]["test_error"]) / len(v) for k in ("none", "dropout")}
    assert abs(paired["diff"] - (errors["none"] - errors["dropout"])) < 1e-9
    assert 0 < paired["se"] < 0.05 and "one-sided p" in gap.paired
    page = docs.read_text()
    assert all(f"## {name}" in page for name in FAST)
    assert "- **Paired over the test set:** over the 1,000 test examples" in page


def test_docs_report_a_failure_as_a_failure(tmp_path) -> None:
    folder = tmp_path / "out" / "spatial"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({
        "claim": "spatial", "description": "d", "setting": "s", "dropkit": "x",
        "published": "y", "verdict": NOT, "why": "the spread was too wide", "mode": "full",
        "numbers": {}, "figure": None, "seconds": 1.0, "date": "2026-11-26",
    }))
    page = write_docs(tmp_path / "out", tmp_path / "R.md").read_text()
    assert "| [spatial](#spatial) | full | not reproduced |" in page
    assert "not reproduced: the spread was too wide." in page


def test_paired_refuses_checkpoints_that_are_not_the_final_models(tmp_path) -> None:
    import pytest

    from dropkit.experiments.engine import TrainConfig, train
    from dropkit.experiments.reproduce import _paired

    tiny = dict(train_size=300, hidden=16, batch_size=50, epochs=1)
    configs = {"a": TrainConfig(dropout=0.0, **tiny), "b": TrainConfig(dropout=0.5, **tiny)}
    res = {}
    for label, config in configs.items():
        history = train(config, tmp_path / "runs" / f"{label}-seed0", progress=False)
        res[label] = {"test_error": [history[-1]["test_error"]]}
    paired, _ = _paired(configs, "a", "b", 1, tmp_path, res)
    assert abs(paired["diff"] - (res["b"]["test_error"][0] - res["a"]["test_error"][0])) < 1e-9
    res["a"]["test_error"] = [res["a"]["test_error"][0] + 0.01]  # metrics of another model
    with pytest.raises(RuntimeError, match="a checkpoint is not the final model"):
        _paired(configs, "a", "b", 1, tmp_path, res)


def test_unknown_claim(capsys, tmp_path) -> None:
    assert main(["reproduce", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown claim(s) ['nope']" in err
