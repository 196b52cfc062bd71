import json
import math

import pytest
import torch

from dropkit.app.cli import main
from dropkit.app.experiments.reproduce import (
    CLAIMS,
    CLAIMS_BY_NAME,
    Verdict,
    run_reproduce,
    stats,
    write_docs,
)
from dropkit.app.experiments.reproduce.registry import ClaimResult, claim
from dropkit.app.experiments.reproduce.runs import paired_difference
from dropkit.app.experiments.reproduce.stats import (
    Effect,
    Finding,
    binom_se,
    combine,
    judge,
    judge_level,
    judge_parts,
    power,
    se_diff,
    seed_effect,
    seeds_for,
    split_noise,
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
        "published": "y", "verdict": Verdict.CONTRADICTED.value,
        "why": "the spread was too wide", "power": "3 seeds detect 1 point", "mode": "full",
        "numbers": {}, "figure": None, "seconds": 1.0, "date": "2026-11-26",
    }))
    page = write_docs(tmp_path / "out", tmp_path / "R.md").read_text()
    assert "| [spatial](#spatial) | full | contradicted |" in page
    assert "- **Verdict:** contradicted: the spread was too wide." in page
    assert "- **Power:** 3 seeds detect 1 point." in page
    assert ("**1 claims:** 0 reproduced, 0 direction reproduced, 0 inconclusive, "
            "1 contradicted.") in page


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
        r = ClaimResult(setting="s", dropkit="d", published="p", verdict=Verdict.INCONCLUSIVE,
                        why="w")
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
        assert seeds_for(effect, mde / 2 * (1 + 1e-9)) == 12  # 4x the seeds halve the se
        assert seeds_for(effect, mde / 2 * (1 - 1e-6)) == 13
        assert "the published effect (1.00) is within reach" in judge(effect).power
        assert "the published effect (0.10) needs 212 seeds" in judge(
            Effect(0.05, 0.3, seeds=3, published=0.1)).power  # 3 (2.802 * 0.3 / 0.1)^2 = 211.9
        with pytest.raises(ValueError, match="expected a size > 0"):
            seeds_for(effect, 0.0)

    def test_a_few_seeds_spread_widens_the_interval_to_students_t(self) -> None:
        from scipy.stats import t

        low, high = Effect(1.0, 0.1, seeds=3, df=4).interval
        assert (high - low) / 2 == pytest.approx(t.ppf(0.975, 4) * 0.1)  # 2.776, not 1.96
        assert str(judge(Effect(0.25, 0.1, seeds=3, df=4)).verdict) == "inconclusive"
        assert str(judge(Effect(0.25, 0.1, seeds=3)).verdict) == "direction reproduced"
        # more seeds: more degrees of freedom as well as a smaller standard error. At 5
        # seeds (df 8): (2.306 + 0.889) 0.1 sqrt(3/5) = 0.2475; at 4 (df 6): (2.447 +
        # 0.906) 0.1 sqrt(3/4) = 0.290
        assert seeds_for(Effect(0.25, 0.1, seeds=3, df=4), 0.25) == 5

    def test_the_test_sets_noise_is_not_shrunk_by_seeds(self) -> None:
        # se 0.01 of which 0.008 is the test examples': seeds only shrink the other 0.006
        effect = Effect(0.01, 0.01, seeds=3, fixed_se=0.008, examples=1000)
        z = stats.Z_TWO_SIDED + stats.Z_POWER
        size = 0.03
        needed = 3 * 0.006 ** 2 / ((size / z) ** 2 - 0.008 ** 2)  # closed form
        assert seeds_for(effect, size) == max(3, int(needed) + 1)
        assert seeds_for(effect, 0.02) is None  # below z * 0.008 = 0.0224: no seeds suffice
        text = power(Effect(0.02, 0.01, seeds=3, fixed_se=0.008, examples=1000))
        floor = z * 0.008
        assert "no number of seeds reaches the measured size (0.020)" in text
        assert f"about {math.ceil(1000 * (floor / 0.02) ** 2):,} would be needed" in text

    def test_split_noise_separates_the_examples_from_the_seeds(self) -> None:
        # per example a true effect (sd 0.3) plus seed noise (sd 0.5): the fixed part is
        # the examples' variance over n, unbiased: the mean of its square over repeats
        # lies within 5 standard errors of 0.3^2 / n
        g = torch.Generator().manual_seed(0)
        seeds, n, repeats = 3, 400, 300
        fixed2, total2 = [], []
        for _ in range(repeats):
            truth = 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
            scores = truth + 0.5 * torch.randn(seeds, n, generator=g, dtype=torch.float64)
            se, fixed = split_noise(scores)
            fixed2.append(fixed ** 2 * n)
            total2.append(se ** 2 * n)
        f, t_ = torch.tensor(fixed2), torch.tensor(total2)
        assert abs(f.mean() - 0.09) < 5 * f.std() / repeats ** 0.5
        assert abs(t_.mean() - (0.09 + 0.25 / seeds)) < 5 * t_.std() / repeats ** 0.5
        assert split_noise(torch.ones(1, 5) * torch.arange(5.0))[1] == split_noise(
            torch.ones(1, 5) * torch.arange(5.0))[0]  # one seed: all of it is fixed

    @pytest.mark.parametrize("shortfall, se, verdict", [
        (0.0, 0.1, "reproduced"), (-0.15, 0.1, "reproduced"),  # within the noise
        (0.5, 0.1, "reproduced"),  # better than published: the level is reached
        (-0.25, 0.1, "contradicted"),  # short beyond the 95% interval
    ])
    def test_level_claims(self, shortfall, se, verdict) -> None:
        found = judge_level(Effect(shortfall, se, seeds=20))
        assert str(found.verdict) == verdict
        assert "detected with 80% power at 20 seeds" in found.power
        assert "at 20 splits" in judge_level(Effect(0.0, 0.1, seeds=20, repeat="split")).power

    def test_a_claim_of_several_parts_takes_its_most_severe_verdict(self) -> None:
        parts = {"a": Finding(Verdict.REPRODUCED, "pa"), "b": Finding(Verdict.INCONCLUSIVE, "pb"),
                 "c": Finding(Verdict.DIRECTION, "pc")}
        assert combine(parts) == Finding(Verdict.INCONCLUSIVE, "b: pb")
        assert combine({"a": parts["a"]}) == parts["a"]
        parts["d"] = Finding(Verdict.CONTRADICTED, "pd")
        assert combine(parts).verdict == Verdict.CONTRADICTED
        with pytest.raises(ValueError, match="expected at least one part"):
            combine({})
        finding, why = judge_parts({"gain": Effect(1.0, 0.1, 3), "at least": Effect(-0.1, 0.1, 3)},
                                   levels=["at least"])
        assert finding.verdict == Verdict.DIRECTION  # the level part is reproduced
        assert why.startswith("gain: +1.00 (95% interval +0.80 to +1.20); at least: -0.10")
        with pytest.raises(ValueError, match="expected levels among the parts"):
            judge_parts({"gain": Effect(1.0, 0.1, 3)}, levels=["gian"])

    def test_statistics(self) -> None:
        assert binom_se(0.05, 1, 1000) == pytest.approx((0.05 * 0.95 / 1000) ** 0.5)
        assert se_diff([1.0, 1.0], [2.0, 2.0]) == 0.0
        res = {"a": {"e": [0.10, 0.11, 0.10]}, "b": {"e": [0.20, 0.21, 0.20]}}
        effect = seed_effect("a", "b", res, "e")  # b - a: > 0 when a is lower
        assert effect.estimate == pytest.approx(0.1) and effect.seeds == 3
        assert effect.se == pytest.approx(se_diff(res["a"]["e"], res["b"]["e"]))
        assert effect.df == pytest.approx(4.0)  # equal spreads, 3 a side: 2 (3 - 1)
        assert judge(effect).verdict == Verdict.DIRECTION
        assert judge(seed_effect("b", "a", res, "e")).verdict == Verdict.CONTRADICTED
        assert str(seed_effect("a", "b", {k: {"test_error": v["e"]} for k, v in res.items()})
                   ) == "+10.00 points (95% interval +8.69 to +11.31)"  # t(4) = 2.776


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


UCI_MISSING = CLAIMS_BY_NAME["uci-regression"].needs()


@pytest.mark.skipif(UCI_MISSING is not None, reason=f"the UCI sets are not here: {UCI_MISSING}")
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


def test_the_committed_page_gives_every_claim_a_verdict_a_power_and_a_source() -> None:
    import re
    from pathlib import Path

    from dropkit.app.experiments.reproduce.docs import count_line
    from dropkit.app.experiments.reproduce.sources import LOCATOR

    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "REPRODUCTIONS.md").read_text()
    sections = {part.split("\n", 1)[0]: part for part in page.split("\n## ")[1:]}
    assert list(sections) == [c.name for c in CLAIMS]
    four = {v.value for v in Verdict}
    verdicts = []
    for name, text in sections.items():
        (published,) = re.findall(r"^- \*\*Published:\*\* (.*)$", text, re.M)
        assert re.search(LOCATOR, published), f"{name}: no table, figure or section cited"
        (verdict,) = re.findall(r"^- \*\*Verdict:\*\* ([a-z ]+):", text, re.M)
        assert verdict in four, f"{name}: {verdict!r} is not one of the four verdicts"
        assert re.search(r"^- \*\*Power:\*\* \S", text, re.M), f"{name}: no power statement"
        assert f"| [{name}](#{name}) | full | {verdict} |" in page
        verdicts.append(verdict)
    line = count_line(verdicts)
    assert line in page  # the page's count is its claims'
    assert line in (root / "README.md").read_text()  # and the README quotes it


def test_uci_splits_are_reused_only_with_their_settings(tmp_path, monkeypatch) -> None:
    from concurrent.futures import Future

    from dropkit.app.experiments.reproduce import runs
    from dropkit.app.experiments.reproduce import uci_regression as U

    submitted: list[tuple[str, int]] = []

    class InProcess:  # the pool's interface, run here, recording what it was given
        def __init__(self, **_) -> None: ...
        def __enter__(self): return self
        def __exit__(self, *_) -> None: ...

        def submit(self, one_thread, fn, name, s, *args) -> Future:
            assert fn is U.split_scores
            submitted.append((name, s))
            future: Future = Future()
            future.set_result({"dropout": {"rmse": 1.0 + s, "ll": -1.0, "mc_se": 0.0},
                               "ensemble": {"rmse": 2.0, "ll": -2.0, "mc_se": 0.0},
                               "chosen": [0.01, 0.5]})
            return future

    monkeypatch.setattr(runs, "ProcessPoolExecutor", InProcess)
    monkeypatch.setattr(runs, "as_completed", lambda futures: list(futures))
    rows = U.run_sets(["yacht"], lambda _: 3, 10, 5, tmp_path)
    assert submitted == [("yacht", 0), ("yacht", 1), ("yacht", 2)]
    assert [s.rmse for s in rows[0].dropout] == [1.0, 2.0, 3.0]
    (tmp_path / "splits" / "yacht-1.json").unlink()  # an interrupted run: one split missing
    submitted.clear()
    again = U.run_sets(["yacht"], lambda _: 3, 10, 5, tmp_path)
    assert submitted == [("yacht", 1)] and again == rows
    submitted.clear()
    U.run_sets(["yacht"], lambda _: 3, 20, 5, tmp_path)  # other settings: nothing reused
    assert submitted == [("yacht", 0), ("yacht", 1), ("yacht", 2)]
