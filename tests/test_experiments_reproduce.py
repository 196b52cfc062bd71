import json

import pytest
import torch

from dropkit.app.cli import main
from dropkit.app.experiments.reproduce import CLAIMS, Verdict, run_reproduce, stats, write_docs
from dropkit.app.experiments.reproduce.registry import ClaimResult, claim
from dropkit.app.experiments.reproduce.runs import paired_difference
from dropkit.app.experiments.reproduce.stats import (
    Effect,
    binom_se,
    directional,
    judge,
    se_diff,
    seeds_for,
)

pytestmark = pytest.mark.slow  # trains models or runs subprocesses: make test runs it


# the fast claims this machine can run (uci-regression needs the UCI sets: its own test)
FAST = [c.name for c in CLAIMS if c.fast and c.needs() is None]


def test_list_has_one_line_per_claim(capsys) -> None:
    assert main(["reproduce", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == [c.name for c in CLAIMS]
    # registration order is the page's order, whatever an import sorter does
    assert [c.name for c in CLAIMS] == [
        "mask-statistics", "mnist5k-gap", "rate-sweep", "data-size", "mc-vs-weight-scaling",
        "uci-boston", "variance-shift", "dropconnect", "spatial", "early-dropout",
        "variational-rnn", "early-stopping", "augmentation", "ensemble-vs-dropout",
        "active-learning",
        "batchbald", "r-drop", "layerdrop", "uci-regression", "shift-calibration",
        "temperature-scaling-shift", "ood-detection", "misclassification-detection"]


def test_quick_run_of_the_fast_claims(tmp_path) -> None:
    docs = tmp_path / "REPRODUCTIONS.md"
    results = run_reproduce(FAST, quick=True, out=tmp_path / "out", docs=docs,
                            log=lambda *_: None)
    assert [r.claim for r in results] == FAST
    for r in results:
        assert isinstance(r.verdict, Verdict) and r.mode == "quick"
        assert r.dropkit and r.published and r.why and r.setting
        saved = json.loads((tmp_path / "out" / r.claim / "result.json").read_text())
        assert saved["verdict"] == r.verdict and saved["mode"] == "quick"
        assert r.figure and open(r.figure, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    by_name = {r.claim: r for r in results}
    assert by_name["mask-statistics"].verdict == Verdict.REPRODUCED  # 5-sigma, fixed seed
    assert by_name["mask-statistics"].description.startswith("fraction of zeros is p")
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
        "published": "y", "verdict": Verdict.NOT.value, "why": "the spread was too wide",
        "mode": "full",
        "numbers": {}, "figure": None, "seconds": 1.0, "date": "2026-11-26",
    }))
    page = write_docs(tmp_path / "out", tmp_path / "R.md").read_text()
    assert "| [spatial](#spatial) | full | not reproduced |" in page
    assert "not reproduced: the spread was too wide." in page


def test_paired_refuses_checkpoints_that_are_not_the_final_models(tmp_path) -> None:
    from dropkit.app.experiments.engine import TrainConfig, train

    tiny = dict(train_size=300, hidden=16, batch_size=50, epochs=1)
    configs = {"a": TrainConfig(dropout=0.0, **tiny), "b": TrainConfig(dropout=0.5, **tiny)}
    res = {}
    for label, config in configs.items():
        history = train(config, tmp_path / "runs" / f"{label}-seed0", progress=False)
        res[label] = {"test_error": [history[-1]["test_error"]]}
    paired, _ = paired_difference(configs, "a", "b", 1, tmp_path, res)
    assert abs(paired["diff"] - (res["b"]["test_error"][0] - res["a"]["test_error"][0])) < 1e-9
    res["a"]["test_error"] = [res["a"]["test_error"][0] + 0.01]  # metrics of another model
    with pytest.raises(RuntimeError, match="a checkpoint is not the final model"):
        paired_difference(configs, "a", "b", 1, tmp_path, res)


def test_unknown_claim(capsys, tmp_path) -> None:
    assert main(["reproduce", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown claim(s) ['nope']" in err


class TestRegistryAndStats:
    def test_a_name_registers_once(self) -> None:
        with pytest.raises(ValueError, match=r"^claim: 'spatial' is registered twice"):
            claim("spatial", "again")(lambda quick, out: None)  # type: ignore[arg-type,return-value]

    def test_results_are_built_by_keyword_and_verdicts_are_an_enum(self) -> None:
        r = ClaimResult(setting="s", dropkit="d", published="p", verdict=Verdict.NOT, why="w")
        assert (r.claim, r.description, r.mode) == ("", "", "")  # the runner fills them in
        assert str(Verdict.DIRECTION) == "direction reproduced"
        assert json.dumps({"v": Verdict.REPRODUCED}) == '{"v": "reproduced"}'

    @pytest.mark.parametrize("estimate, se, matches, verdict", [
        (1.0, 0.1, True, "reproduced"),
        (1.0, 0.1, False, "direction reproduced"),
        (0.50, 0.53, False, "inconclusive"),  # early dropout's last run: z = 0.94
        (-0.47, 0.29, False, "inconclusive"),  # dropconnect's: z = -1.6, not beyond noise
        (-1.17, 0.37, False, "contradicted"),  # augmentation's: z = -3.2
        (0.1, 0.1, True, "inconclusive"),  # a match with the paper is not enough alone
    ])
    def test_four_verdicts(self, estimate, se, matches, verdict) -> None:
        found = judge(Effect(estimate, se, seeds=3), matches_published=matches)
        assert str(found.verdict) == verdict
        assert found.power.startswith("the smallest effect 3 seeds detect with 80% power is")

    def test_power_is_eighty_percent_at_the_minimum_detectable_effect(self) -> None:
        # estimates drawn around the MDE: the interval clears 0 in 80% of runs
        se = 0.3
        mde = (stats.Z_TWO_SIDED + stats.Z_POWER) * se
        g = torch.Generator().manual_seed(0)
        n = 20_000
        draws = mde + se * torch.randn(n, generator=g, dtype=torch.float64)
        found = sum(judge(Effect(float(d), se, seeds=3)).verdict == Verdict.DIRECTION
                    for d in draws)
        assert abs(found / n - 0.8) < 5 * (0.8 * 0.2 / n) ** 0.5  # 5 binomial sigma

    def test_seeds_needed_scale_with_the_square_of_the_ratio(self) -> None:
        effect = Effect(0.5, 0.3, seeds=3, published=1.0)
        mde = (stats.Z_TWO_SIDED + stats.Z_POWER) * 0.3
        assert seeds_for(effect, mde) == 3
        assert seeds_for(effect, mde / 2) == 12
        assert "the published effect (1) needs 3 seeds" in judge(effect).power
        with pytest.raises(ValueError, match="expected a size > 0"):
            seeds_for(effect, 0.0)

    def test_statistics(self) -> None:
        assert binom_se(0.05, 1, 1000) == pytest.approx((0.05 * 0.95 / 1000) ** 0.5)
        assert se_diff([1.0, 1.0], [2.0, 2.0]) == 0.0
        res = {"a": {"e": [0.10, 0.11, 0.10]}, "b": {"e": [0.20, 0.21, 0.20]}}
        assert directional("a", "b", res, "e")[0]  # lower by far more than 2 SE
        assert not directional("b", "a", res, "e")[0]


def test_a_quick_run_leaves_the_committed_page_alone(tmp_path, monkeypatch) -> None:
    # regression: `dropkit reproduce --quick` rewrote docs/REPRODUCTIONS.md with quick numbers
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    committed = tmp_path / "docs" / "REPRODUCTIONS.md"
    committed.write_text("the full run's page\n")
    assert main(["reproduce", "mask-statistics", "--quick", "--out", "o"]) == 0
    assert committed.read_text() == "the full run's page\n"
    assert "## mask-statistics" in (tmp_path / "o" / "REPRODUCTIONS.md").read_text()


def _empty_data(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DROPKIT_DATA", str(tmp_path / "no-data"))


def test_a_claim_asked_for_by_name_that_cannot_run_is_refused_first(tmp_path, monkeypatch,
                                                                     capsys) -> None:
    _empty_data(tmp_path, monkeypatch)
    code = main(["reproduce", "mask-statistics", "uci-regression", "--quick", "--out",
                 str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "claim 'uci-regression' cannot run here" in err
    assert "DROPKIT_DATA" in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "mask-statistics").exists()  # refused before any claim


def test_every_claim_skips_one_that_cannot_run_saying_why(tmp_path, monkeypatch) -> None:
    from dropkit.app.experiments.reproduce import CLAIMS_BY_NAME

    _empty_data(tmp_path, monkeypatch)
    lines: list[str] = []
    # "every claim", cut to the one that cannot run so that nothing trains
    monkeypatch.setattr("dropkit.app.experiments.reproduce.CLAIMS",
                        [CLAIMS_BY_NAME["uci-regression"]])
    assert run_reproduce((), quick=True, out=tmp_path / "o", docs=None,
                         log=lines.append) == []
    assert lines == [f"[uci-regression] skipped: {CLAIMS_BY_NAME['uci-regression'].needs()}"]


def test_a_partial_run_keeps_the_other_claims_on_the_page(tmp_path) -> None:
    docs = tmp_path / "REPRODUCTIONS.md"
    out = tmp_path / "out"
    result = {"description": "d", "setting": "s", "dropkit": "x", "published": "y",
              "why": "w", "mode": "full", "date": "2026-01-01", "seconds": 1.0}
    for name, verdict in (("spatial", "not reproduced"), ("mask-statistics", "reproduced")):
        (out / name).mkdir(parents=True)
        (out / name / "result.json").write_text(json.dumps(
            {**result, "claim": name, "verdict": verdict, "table": "| a |\n|---|"}))
    first = write_docs(out, docs).read_text()
    again = tmp_path / "again"
    (again / "spatial").mkdir(parents=True)
    (again / "spatial" / "result.json").write_text(json.dumps(
        {**result, "claim": "spatial", "verdict": "reproduced", "why": "now it holds"}))
    page = write_docs(again, docs).read_text()
    assert "| [mask-statistics](#mask-statistics) | full | reproduced |" in page
    assert "| [spatial](#spatial) | full | reproduced |" in page
    assert "now it holds" in page and "| [spatial](#spatial) | full | not" not in page
    # the kept section is the old one, whole (its table too), in the registry's order
    kept = first[first.index("## mask-statistics"):first.index("## spatial")]
    assert kept in page and page.index("## mask-statistics") < page.index("## spatial")


@pytest.mark.skipif(CLAIMS[-1].needs() is not None,
                    reason=f"the UCI sets are not here: {CLAIMS[-1].needs()}")
def test_quick_run_of_the_uci_regression_claim(tmp_path) -> None:
    docs = tmp_path / "REPRODUCTIONS.md"
    (result,) = run_reproduce(["uci-regression"], quick=True, out=tmp_path / "out",
                              docs=docs, log=lambda *_: None)
    assert set(result.numbers) == {"yacht", "energy"}
    for row in result.numbers.values():
        assert len(row["dropout_rmse"]) == len(row["ensemble_ll"]) == 2
        assert all(0 < r < 10 for r in row["dropout_rmse"] + row["ensemble_rmse"])
    page = docs.read_text()
    assert "| yacht | 2 |" in page and "| energy | 2 |" in page
    assert open(result.figure, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_hanley_mcneil_at_chance_is_the_mann_whitney_variance() -> None:
    from dropkit.app.experiments.reproduce.trust import hanley_mcneil

    for n1, n2 in ((10, 30), (200, 150)):
        exact = ((n1 + n2 + 1) / (12 * n1 * n2)) ** 0.5
        assert hanley_mcneil(0.5, n1, n2) == pytest.approx(exact, rel=1e-12)
    assert hanley_mcneil(1.0, 10, 10) == 0.0
