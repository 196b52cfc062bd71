"""The ``uci-boston`` claim: MC dropout regression on Boston housing (Gal & Ghahramani 2016)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dropkit.app.experiments import regression as R
from dropkit.app.experiments.report import mean_spread, plt, save_figure
from dropkit.app.experiments.reproduce.registry import ClaimResult, claim
from dropkit.app.experiments.reproduce.runs import in_workers
from dropkit.app.experiments.reproduce.sources import GAL_README, GAL_UCI
from dropkit.app.experiments.reproduce.stats import Effect, judge_parts

RATES = (0.005, 0.01, 0.05, 0.1)
TAUS = (0.25, 0.5, 0.75)
HIDDEN = 50
VALIDATION_SAMPLES = 100


def boston_split(s: int, samples: int, epochs: int) -> dict[str, Any]:
    """MC dropout on split ``s`` of Boston housing: the unit of work (and of reuse)."""
    from mlxtend.data import boston_housing_data

    x, y = boston_housing_data()
    scores, pair = R.dropout_split(x, y, s, RATES, TAUS, hidden=HIDDEN, epochs=epochs,
                                   samples=samples, validation_samples=VALIDATION_SAMPLES)
    return {"rmse": scores.rmse, "ll": scores.ll, "chosen": list(pair)}


@claim("uci-boston", "MC dropout regression on Boston housing (Gal & Ghahramani 2016)", fast=False)
def uci_boston(quick: bool, out: Path) -> ClaimResult:
    # quick: the paper's 40 epochs; full: the authors' updated protocol, 10x the epochs
    splits, samples, epochs = (5, 200, 40) if quick else (20, 1000, 400)
    paper = {"rmse": (2.97, 0.19), "ll": (-2.46, 0.06)} if quick else {
        "rmse": (2.80, 0.19), "ll": (-2.39, 0.045)}
    settings = {"samples": samples, "epochs": epochs, "rates": list(RATES), "taus": list(TAUS),
                "hidden": HIDDEN, "validation_samples": VALIDATION_SAMPLES,
                "length_scale": R.LENGTH_SCALE}  # all a split's numbers depend on
    done = in_workers(boston_split, {f"split-{s}": (s, samples, epochs) for s in range(splits)},
                      settings, out / "splits")
    rmses = [done[f"split-{s}"]["rmse"] for s in range(splits)]
    lls = [done[f"split-{s}"]["ll"] for s in range(splits)]
    chosen = [tuple(done[f"split-{s}"]["chosen"]) for s in range(splits)]
    rm, rs = mean_spread(rmses)
    lm, ls = mean_spread(lls)
    rse, lse = rs / math.sqrt(splits), ls / math.sqrt(splits)
    parts = {"RMSE, published - dropkit": Effect(paper["rmse"][0] - rm,
                                                 math.hypot(rse, paper["rmse"][1]), splits,
                                                 repeat="split"),
             "test LL, dropkit - published": Effect(lm - paper["ll"][0],
                                                    math.hypot(lse, paper["ll"][1]), splits,
                                                    repeat="split")}
    finding, why = judge_parts(parts, levels=list(parts))
    fig, axes = plt().subplots(1, 2, figsize=(8, 3.2))
    axes[0].hist(rmses, bins=10)
    axes[0].axvline(paper["rmse"][0], color="k", ls="--")
    axes[0].set_title("RMSE per split (dashed: paper)")
    axes[1].hist(lls, bins=10)
    axes[1].axvline(paper["ll"][0], color="k", ls="--")
    axes[1].set_title("test log-likelihood per split")
    fig_path = str(save_figure(fig, out / "result.png"))
    return ClaimResult(
        setting=(
            f"Boston housing (mlxtend), {splits} random 90/10 splits, 1 hidden layer of 50 "
            f"ReLU units, dropout on input and hidden, Adam, {epochs} epochs, batch 128; p in "
            f"{RATES} and tau in {TAUS} chosen per split on a 20% validation part; T = "
            f"{samples} MC samples"),
        dropkit=f"RMSE {rm:.2f} ± {rse:.2f}, test LL {lm:.2f} ± {lse:.2f} (± standard error)",
        published=(
            f"{GAL_UCI}, Table 1 (40 epochs, hyperparameters by Spearmint): RMSE 2.97, test "
            "LL -2.46; the table prints ± 0.85 and ± 0.25, deviations over the 20 splits (its "
            f"caption says standard errors), and {GAL_README}'s 10x-epochs table gives the "
            "standard errors 0.19 and 0.06 used here" if quick else
            f"{GAL_README}, 10x-epochs table (400 epochs, grid search as here): RMSE 2.80 ± "
            "0.19, test LL -2.39 ± 0.05 (standard errors over 20 splits; an earlier version of "
            "the README prints the deviations, -2.389279 ± 0.201823 for the LL, whose standard "
            "error 0.045 is used here)"),
        verdict=finding.verdict,
        why=(f"{why} (positive: better than published; the standard errors combine ours over "
             "splits and the paper's; their Keras initialisation and splits and, for 40 "
             "epochs, Spearmint tuning differ from this run)"),
        power=finding.power,
        numbers={"rmse": rmses, "ll": lls, "chosen": chosen},
        figure=fig_path,
    )
