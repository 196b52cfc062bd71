"""The ``rate-sweep`` claim: test error is flat for p in 0.2-0.6 and rises at the extremes
(Srivastava et al. 2014, Fig. 9)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from dropkit.app.experiments.engine import TrainConfig
from dropkit.app.experiments.report import mean_spread, plt, save_figure
from dropkit.app.experiments.reproduce.registry import ClaimResult, Verdict, claim
from dropkit.app.experiments.reproduce.runs import finals
from dropkit.app.experiments.reproduce.sources import SRIVASTAVA
from dropkit.app.experiments.reproduce.stats import (
    N_TEST,
    RANGE_95,
    Finding,
    binom_se,
    judge_parts,
    test_set_effect,
)


@claim("rate-sweep",
       "test error is flat for p in 0.2-0.6 and rises at the extremes (Fig. 9)",
       fast=False)
def rate_sweep(quick: bool, out: Path) -> ClaimResult:
    rates = (0.0, 0.2, 0.4, 0.6, 0.9) if quick else (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7,
                                                     0.8, 0.9)
    epochs, hidden, seeds = (10, 256, 1) if quick else (30, 1024, 2)
    configs = {f"p{p:g}": TrainConfig(dropout=p, input_dropout=0.2, epochs=epochs,
                                      hidden=hidden, eval_every=epochs) for p in rates}
    res = finals(configs, seeds, out)
    err = {p: mean_spread(res[f"p{p:g}"]["test_error"])[0] for p in rates}
    band = [err[p] for p in rates if 0.2 <= p <= 0.6]
    spread = max(band) - min(band)
    se = binom_se(statistics.fmean(band), seeds)
    flat = spread <= RANGE_95[len(band)] * se  # no more spread than noise gives
    hi, lo = err[rates[-1]] - max(band), err[0.0] - min(band)
    # a rise is a difference of two mean errors: sqrt(2) times one's standard error
    rise = {f"error at p = {rates[-1]:g} less the band's worst": hi,
            "error at p = 0 less the band's best": lo}
    noise = math.sqrt(2) * se
    finding, rises = judge_parts({k: test_set_effect(v, noise, N_TEST, seeds, points=True)
                                  for k, v in rise.items()}, matches_published=True)
    flat_cut = RANGE_95[len(band)] * se
    if not flat:  # the band's spread is beyond noise: the flat part is contradicted
        finding = Finding(Verdict.CONTRADICTED, finding.power)
    fig, ax = plt().subplots(figsize=(6, 3.6))
    ax.plot(list(rates), [100 * err[p] for p in rates], "o-")
    ax.axvspan(0.2, 0.6, alpha=0.1)
    ax.set_xlabel("p (drop probability of hidden units)")
    ax.set_ylabel("test error %")
    fig_path = str(save_figure(fig, out / "result.png"))
    why = (f"the spread over 0.2-0.6 is {'within' if flat else 'beyond'} what test-set noise "
           f"gives ({100 * spread:.2f} vs {100 * flat_cut:.2f} points, the 95th percentile of "
           f"the range of {len(band)} noisy errors); {rises}")
    return ClaimResult(
        setting=(
            f"MNIST-5k, MLP 784-{hidden}-{hidden}-10, input dropout 0.2, {epochs} epochs, "
            f"{seeds} seed(s) per rate"),
        dropkit=(
            ", ".join(f"p={p:g}: {100 * err[p]:.2f}%" for p in rates)
            + f"; spread over 0.2-0.6: {100 * spread:.2f} points"),
        published=(
            f"{SRIVASTAVA}, Sec. 7.5, Fig. 9a (the number of units fixed): test error flat for "
            "a retention probability between about 0.4 and 0.8 (drop 0.2-0.6), rising towards "
            "both ends"),
        verdict=finding.verdict,
        why=why,
        power=finding.power,
        numbers={"rates": list(rates), "test_error": err, "band_spread": spread},
        figure=fig_path,
    )
