"""``dropkit reproduce``: every claim of the lesson and its papers, measured and set beside
the published number.

Run::

    dropkit reproduce --list
    dropkit reproduce --quick                      # every claim, small settings (< 5 min)
    dropkit reproduce mnist5k-gap uci-boston       # chosen claims, full settings
    dropkit reproduce --out runs/reproduce --docs docs/REPRODUCTIONS.md

Each claim writes ``OUT/<claim>/result.json`` and a PNG; ``--docs`` is regenerated from
every result in OUT. A claim that does not reproduce is reported as such, with the
reason: nothing is tuned until it passes.
"""

from __future__ import annotations

import datetime
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dropkit.errors import UsageError
from dropkit.experiments.data import load_dataset, standardized_regression
from dropkit.experiments.engine import (
    TrainConfig,
    dataset_for,
    load_final,
    predict,
    train,
    train_seeds,
)
from dropkit.experiments.io import atomic_write_json, atomic_write_text, check_writable_dir
from dropkit.experiments.report import mean_spread, plt, save_figure

__all__ = ["CLAIMS", "Claim", "ClaimResult", "run_reproduce", "write_docs"]

REPRODUCED, DIRECTION, NOT = "reproduced", "direction reproduced", "not reproduced"


@dataclass
class ClaimResult:
    claim: str
    description: str
    setting: str
    dropkit: str  # our number(s), with spread
    published: str  # the published number(s), with the source
    verdict: str  # REPRODUCED, DIRECTION or NOT
    why: str  # one sentence
    numbers: dict[str, Any] = field(default_factory=dict)
    mode: str = "full"
    figure: str | None = None
    paired: str = ""  # the same difference, paired over the test examples (reported only)


@dataclass(frozen=True)
class Claim:
    name: str
    description: str
    run: Callable[[bool, Path], ClaimResult]
    fast: bool  # its quick run takes seconds: CI runs it


def _se_diff(a: Sequence[float], b: Sequence[float]) -> float:
    """Standard error of mean(a) - mean(b) from the seeds' spread."""
    return math.sqrt(mean_spread(a)[1] ** 2 / len(a) + mean_spread(b)[1] ** 2 / len(b))


def _pm(values: Sequence[float], percent: bool = True) -> str:
    m, s = mean_spread(values)
    return f"{100 * m:.2f} ± {100 * s:.2f}%" if percent else f"{m:.4f} ± {s:.4f}"


def _finals(configs: dict[str, TrainConfig], seeds: int, out: Path, data=None
            ) -> dict[str, dict[str, list[float]]]:
    """Final train/test error of each configuration over seeds (resumable runs)."""
    data = data if data is not None else dataset_for(next(iter(configs.values())))
    res: dict[str, dict[str, list[float]]] = {}
    for label, histories in train_seeds(configs, seeds, out, data=data).items():
        final = [h[-1] for h in histories]
        tr, te = [r["train_error"] for r in final], [r["test_error"] for r in final]
        res[label] = {"train_error": tr, "test_error": te,
                      "train_loss": [r["eval_train_loss"] for r in final],
                      "gap": [b - a for a, b in zip(tr, te, strict=True)]}
    return res


def _bar(res: dict[str, dict[str, list[float]]], out: Path, title: str, key="test_error") -> str:
    fig, ax = plt().subplots(figsize=(6, 3.6))
    labels = list(res)
    scale = 100 if key.endswith("error") else 1
    means = [scale * mean_spread(res[k][key])[0] for k in labels]
    sds = [scale * mean_spread(res[k][key])[1] for k in labels]
    ax.bar(labels, means, yerr=sds, capsize=4, color=[f"C{i}" for i in range(len(labels))])
    ax.set_ylabel(key.replace("_", " ") + (" %" if key.endswith("error") else ""))
    ax.set_title(title)
    return str(save_figure(fig, out / "result.png"))


# 95th percentile of the range of k independent standard normal draws (the studentized
# range with infinite degrees of freedom): a spread below it is what noise alone gives.
RANGE_95 = {2: 2.77, 3: 3.31, 4: 3.63, 5: 3.86, 6: 4.03}
N_TEST = 1000  # MNIST-5k's test split


def _binom_se(error: float, seeds: int, n: int = N_TEST) -> float:
    """Standard error of a mean test error over seeds, each on n test examples."""
    return math.sqrt(max(error * (1 - error), 1e-12) / (n * seeds))


def _directional(better: str, worse: str, res, key: str = "test_error") -> tuple[bool, float]:
    """Is ``better`` lower than ``worse`` by more than 2 standard errors of the difference?"""
    diff = mean_spread(res[worse][key])[0] - mean_spread(res[better][key])[0]
    return diff > 2 * _se_diff(res[worse][key], res[better][key]), diff


def _paired(configs: dict[str, TrainConfig], better: str, worse: str, seeds: int, out: Path,
            res: dict[str, dict[str, list[float]]], data=None) -> tuple[dict[str, float], str]:
    """The test-error difference ``worse - better``, paired over the test examples.

    Every test example scores (worse is wrong) - (better is wrong), averaged over the
    seeds. The scores' mean is exactly the difference of the mean test errors; their
    standard error treats the test examples as the sample, so the examples both networks
    get wrong cancel (the seeds' spread cannot see that), while training noise enters
    only through the seeds averaged within each example. Reported beside the verdict,
    which keeps its rule.
    """
    data = data if data is not None else dataset_for(configs[better])
    score = torch.zeros(len(data.y_test), dtype=torch.float64)
    for seed in range(seeds):
        for label, sign in ((worse, 1.0), (better, -1.0)):
            net = load_final(configs[label], data, out / "runs" / f"{label}-seed{seed}")
            wrong = predict(net, data.x_test).argmax(1) != data.y_test
            score += sign * wrong.double() / seeds
    diff, n = score.mean().item(), len(score)
    expected = mean_spread(res[worse]["test_error"])[0] - mean_spread(res[better]["test_error"])[0]
    if abs(diff - expected) > 1e-9:
        raise RuntimeError(f"{better} vs {worse}: the checkpoints give a difference of {diff}, "
                           f"the final metrics {expected}: a checkpoint is not the final model")
    se = score.std().item() / math.sqrt(n)
    z = diff / se if se > 0 else 0.0
    p = 1.0 - statistics.NormalDist().cdf(z)  # one-sided: better has fewer errors
    text = (f"over the {n:,} test examples, seeds averaged per example: {better} is lower by "
            f"{100 * diff:.2f} ± {100 * se:.2f} points (z = {z:.2f}, one-sided p = {p:.2g})")
    return {"diff": diff, "se": se, "z": z, "p": p}, text


# --- 1. lesson-mask --------------------------------------------------------------------


def lesson_mask(quick: bool, out: Path) -> ClaimResult:
    from dropkit.functional import dropout
    from dropkit.models import MLPWithDropout

    n = 10**6
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, generator=g) + 0.5
    rows, ok = [], True
    for p in (0.1, 0.2, 0.5, 0.8):
        y = dropout(x, p, generator=g)
        zeros = (y == 0).double().mean().item()
        mean_ratio = y.double().mean().item() / x.double().mean().item()
        z_zero = abs(zeros - p) / math.sqrt(p * (1 - p) / n)
        sd_y = math.sqrt((x.double() ** 2).mean().item() / (1 - p) - x.double().mean().item() ** 2)
        z_mean = abs(y.double().mean().item() - x.double().mean().item()) / (sd_y / math.sqrt(n))
        ok &= z_zero <= 5 and z_mean <= 5
        rows.append({"p": p, "zeros": zeros, "mean_ratio": mean_ratio, "z_zeros": z_zero,
                     "z_mean": z_mean})
    model = MLPWithDropout(hidden_size=256, generator=g)
    sample = torch.randn(1, 784, generator=g)
    with torch.no_grad():
        train_std = torch.stack([model.train()(sample) for _ in range(5)]).std(0).mean().item()
        eval_std = torch.stack([model.eval()(sample) for _ in range(5)]).std(0).mean().item()
    ok &= train_std > 0 and eval_std == 0
    fig, ax = plt().subplots(figsize=(5, 3.4))
    ps = [r["p"] for r in rows]
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="fraction = p")
    ax.plot(ps, [r["zeros"] for r in rows], "o", label="measured fraction of zeros")
    ax.plot(ps, [r["mean_ratio"] for r in rows], "s", label="output mean / input mean")
    ax.set_xlabel("p")
    ax.legend(fontsize=8)
    figure = str(save_figure(fig, out / "result.png"))
    text = "; ".join(f"p={r['p']}: zeros {r['zeros']:.4f}, mean x{r['mean_ratio']:.4f}"
                     for r in rows)
    return ClaimResult(
        "lesson-mask", CLAIMS_BY_NAME["lesson-mask"].description,
        "10^6 elements U(0.5, 1.5) per rate; the lesson's MLPWithDropout, 5 passes",
        f"{text}; std over passes: train {train_std:.4f}, eval {eval_std:.4f}",
        "the lesson, sections 2-4: fraction of zeros = p, E[output] = input, eval identical",
        REPRODUCED if ok else NOT,
        "every fraction and mean lies within 5 standard errors of the lesson's value, and "
        "eval-mode outputs are identical" if ok else
        "a fraction or a mean lies more than 5 standard errors from the lesson's value",
        {"rates": rows, "train_std": train_std, "eval_std": eval_std},
        figure=figure,
    )


# --- 2. mnist5k-gap --------------------------------------------------------------------


def mnist5k_gap(quick: bool, out: Path) -> ClaimResult:
    epochs, hidden, seeds = (15, 256, 3) if quick else (60, 1024, 3)
    base: dict[str, Any] = dict(epochs=epochs, hidden=hidden, eval_every=epochs)
    configs = {"none": TrainConfig(dropout=0.0, input_dropout=0.0, **base),
               "dropout": TrainConfig(dropout=0.5, input_dropout=0.2, **base)}
    res = _finals(configs, seeds, out)
    paired, paired_text = _paired(configs, "dropout", "none", seeds, out, res)
    test_ok, _ = _directional("dropout", "none", res)
    gap_ok, _ = _directional("dropout", "none", res, "gap")
    verdict = DIRECTION if test_ok and gap_ok else NOT
    return ClaimResult(
        "mnist5k-gap", CLAIMS_BY_NAME["mnist5k-gap"].description,
        f"MNIST-5k (4,000 train / 1,000 test), MLP 784-{hidden}-{hidden}-10, SGD momentum "
        f"0.9, {epochs} epochs, {seeds} seeds; dropout 0.2 input / 0.5 hidden",
        f"test error {_pm(res['none']['test_error'])} without, "
        f"{_pm(res['dropout']['test_error'])} with; gap {_pm(res['none']['gap'])} without, "
        f"{_pm(res['dropout']['gap'])} with",
        "Srivastava et al. 2014, Table 2 (full MNIST, 60,000 examples): 1.60% for a standard "
        "net, 1.35% with dropout and logistic units, 1.25% with ReLUs (3 layers of 1024)",
        verdict,
        "dropout lowered both the test error and the gap by more than 2 standard errors; "
        "the absolute numbers differ because this is 4,000 examples, not 60,000"
        if verdict == DIRECTION else
        "dropout did not lower the test error and the gap by more than 2 standard errors",
        {**res, "paired": paired}, "quick" if quick else "full",
        _bar(res, out, "MNIST-5k: test error"), paired_text,
    )


# --- 3. rate-sweep ---------------------------------------------------------------------


def rate_sweep(quick: bool, out: Path) -> ClaimResult:
    rates = (0.0, 0.2, 0.4, 0.6, 0.9) if quick else (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7,
                                                     0.8, 0.9)
    epochs, hidden, seeds = (10, 256, 1) if quick else (30, 1024, 2)
    configs = {f"p{p:g}": TrainConfig(dropout=p, input_dropout=0.2, epochs=epochs,
                                      hidden=hidden, eval_every=epochs) for p in rates}
    res = _finals(configs, seeds, out)
    err = {p: mean_spread(res[f"p{p:g}"]["test_error"])[0] for p in rates}
    band = [err[p] for p in rates if 0.2 <= p <= 0.6]
    spread = max(band) - min(band)
    se = _binom_se(statistics.fmean(band), seeds)
    flat = spread <= RANGE_95[len(band)] * se  # no more spread than noise gives
    hi, lo = err[rates[-1]] - max(band), err[0.0] - min(band)
    high_rise, low_rise = hi > 2 * math.sqrt(2) * se, lo > 2 * math.sqrt(2) * se
    rises = high_rise and lo > 0
    fig, ax = plt().subplots(figsize=(6, 3.6))
    ax.plot(list(rates), [100 * err[p] for p in rates], "o-")
    ax.axvspan(0.2, 0.6, alpha=0.1)
    ax.set_xlabel("p (drop probability of hidden units)")
    ax.set_ylabel("test error %")
    fig_path = str(save_figure(fig, out / "result.png"))
    verdict = REPRODUCED if flat and high_rise and low_rise else (DIRECTION if rises else NOT)
    parts = [
        f"the spread over 0.2-0.6 is {'within' if flat else 'beyond'} what test-set noise "
        f"gives ({100 * spread:.2f} vs {100 * RANGE_95[len(band)] * se:.2f} points)",
        f"p = {rates[-1]:g} is {'significantly ' if high_rise else ''}worse than the band",
        "p = 0 is " + ("significantly worse" if low_rise else
                       "worse, but within noise," if lo > 0 else "not worse")
        + " than the band's best",
    ]
    return ClaimResult(
        "rate-sweep", CLAIMS_BY_NAME["rate-sweep"].description,
        f"MNIST-5k, MLP 784-{hidden}-{hidden}-10, input dropout 0.2, {epochs} epochs, "
        f"{seeds} seed(s) per rate",
        ", ".join(f"p={p:g}: {100 * err[p]:.2f}%" for p in rates)
        + f"; spread over 0.2-0.6: {100 * spread:.2f} points",
        "Srivastava et al. 2014, Fig. 9a: test error flat for a keep probability between "
        "about 0.4 and 0.8 (drop 0.2-0.6), rising towards both ends",
        verdict,
        "; ".join(parts),
        {"rates": list(rates), "test_error": err, "band_spread": spread},
        "quick" if quick else "full", fig_path,
    )


# --- 4. data-size ----------------------------------------------------------------------


def data_size(quick: bool, out: Path) -> ClaimResult:
    sizes = (100, 500, 2000) if quick else (100, 250, 500, 1000, 2000, 4000)
    hidden, seeds, steps = (256, 1, 400) if quick else (1024, 2, 1500)
    gains, rows = {}, {}
    for n in sizes:
        epochs = max(1, math.ceil(steps / math.ceil(n / 100)))
        base: dict[str, Any] = dict(epochs=epochs, hidden=hidden, train_size=n, eval_every=epochs)
        res = _finals({f"n{n}-none": TrainConfig(dropout=0.0, input_dropout=0.0, **base),
                       f"n{n}-dropout": TrainConfig(dropout=0.5, input_dropout=0.2, **base)},
                      seeds, out)
        none, drop = res[f"n{n}-none"]["test_error"], res[f"n{n}-dropout"]["test_error"]
        gains[n] = mean_spread(none)[0] - mean_spread(drop)[0]
        rows[n] = {"none": none, "dropout": drop}
    first, best = gains[sizes[0]], max(gains.values())
    peak = max(gains, key=lambda n: gains[n])
    # a gain is a difference of two mean errors: its standard error is sqrt(2) times one's
    se = {n: math.sqrt(2) * _binom_se(mean_spread(rows[n]["none"])[0], seeds) for n in sizes}
    grows = best - first > 2 * math.hypot(se[peak], se[sizes[0]])
    shrinks = peak != sizes[-1] and best - gains[sizes[-1]] > 2 * math.hypot(se[peak],
                                                                             se[sizes[-1]])
    fig, ax = plt().subplots(figsize=(6, 3.6))
    ax.plot(list(sizes), [100 * gains[n] for n in sizes], "o-")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("training examples")
    ax.set_ylabel("test error without - with dropout (points)")
    fig_path = str(save_figure(fig, out / "result.png"))
    verdict = REPRODUCED if grows and shrinks else (DIRECTION if grows else NOT)
    return ClaimResult(
        "data-size", CLAIMS_BY_NAME["data-size"].description,
        f"subsets of MNIST-5k's training split, MLP 784-{hidden}-{hidden}-10, about {steps} "
        f"SGD steps each, {seeds} seed(s); dropout 0.2 / 0.5 vs none",
        ", ".join(f"n={n}: gain {100 * gains[n]:+.2f} points" for n in sizes),
        "Srivastava et al. 2014, Fig. 10 (MNIST subsets of 100 to 50,000): no gain at 100 "
        "and 500 examples, the largest gains in the middle, a smaller gain at 50,000",
        verdict,
        ("the gain grows from the smallest subset and shrinks again before the largest, "
         "each by more than 2 standard errors" if verdict == REPRODUCED else
         "the gain grows with data by more than 2 standard errors, but does not shrink "
         "significantly within MNIST-5k's 4,000 examples" if verdict == DIRECTION else
         "the gain at the best size is not above the smallest subset's by more than 2 "
         "standard errors"),
        {"sizes": list(sizes), "gain": gains, "test_error": rows},
        "quick" if quick else "full", fig_path,
    )


# --- 5. mc-vs-weight-scaling -----------------------------------------------------------


def mc_vs_weight_scaling(quick: bool, out: Path) -> ClaimResult:
    from dropkit.experiments.uncertainty import error_vs_samples
    from dropkit.mc import mc_predict

    epochs, hidden, samples = (10, 256, 100) if quick else (60, 1024, 500)
    cfg = TrainConfig(epochs=epochs, hidden=hidden, eval_every=epochs)
    data = load_dataset("mnist5k")
    train(cfg, out / "model", resume=True, progress=False, data=data, log=lambda *_: None)
    net = load_final(cfg, data, out / "model", torch.Generator().manual_seed(1))
    x, y = data.x_test, data.y_test
    torch.manual_seed(0)
    with torch.no_grad():
        ws = (net.eval()(x).argmax(-1) != y).double().mean().item()
    probs = mc_predict(net, x, samples, chunk_size=50).softmax(-1)
    curve = error_vs_samples(probs, y, (1, 2, 5, 10, 20, 50, 100, 200, 500))
    se = math.sqrt(ws * (1 - ws) / len(y))  # binomial standard error of a test error
    at50 = curve[50][0]
    match50 = abs(at50 - ws) <= 2 * se
    k_match = next((k for k, (m, _) in curve.items() if m <= ws + se), None)
    fig, ax = plt().subplots(figsize=(6, 3.6))
    ax.errorbar(list(curve), [100 * m for m, _ in curve.values()],
                [100 * s for _, s in curve.values()], marker="o", capsize=3, label="MC, k samples")
    ax.axhline(100 * ws, color="k", ls="--", label="weight scaling")
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("test error %")
    ax.legend()
    fig_path = str(save_figure(fig, out / "result.png"))
    return ClaimResult(
        "mc-vs-weight-scaling", CLAIMS_BY_NAME["mc-vs-weight-scaling"].description,
        f"MNIST-5k, MLP 784-{hidden}-{hidden}-10 with dropout 0.2 / 0.5, {epochs} epochs; "
        f"MC averages of k of {samples} samples (mean over disjoint groups)",
        f"weight scaling {100 * ws:.2f}%; MC k=1 {100 * curve[1][0]:.2f}%, k=10 "
        f"{100 * curve[10][0]:.2f}%, k=50 {100 * at50:.2f}%; within 1 SE from k={k_match}",
        "Srivastava et al. 2014, Fig. 11 (MNIST): MC averaging matches weight scaling at "
        "about k = 50 samples",
        REPRODUCED if match50 else NOT,
        (f"at k = 50 the MC error is within 2 binomial standard errors ({100 * se:.2f} "
         "points) of weight scaling" if match50 else
         "at k = 50 the MC error is more than 2 standard errors from weight scaling"),
        {"weight_scaling": ws, "curve": {str(k): v for k, v in curve.items()}, "se": se},
        "quick" if quick else "full", fig_path,
    )


# --- 6. uci-boston ---------------------------------------------------------------------


def _boston_split(model_seed: int, x, y, train_idx, test_idx, p: float, tau: float,
                  epochs: int, samples: int) -> tuple[float, float]:
    """Gal & Ghahramani's UCI protocol for one split and one (p, tau): RMSE and test LL."""
    from dropkit import uncertainty as U
    from dropkit.mc import mc_predict
    from dropkit.models import RegressionMLP

    data = standardized_regression("boston", x, y, train_idx, test_idx)
    torch.manual_seed(model_seed)
    g = torch.Generator().manual_seed(model_seed)
    net = RegressionMLP(13, 50, p, p, generator=g)
    n = len(data.x_train)
    # weight decay of their Keras code: l2 = l^2 (1 - p) / (2 N tau), with l = 1e-2
    reg = 1e-4 * (1 - p) / (2 * n * tau)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=2 * reg)
    order = torch.Generator().manual_seed(model_seed + 1)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(n, generator=order)
        for i in range(0, n, 128):
            idx = perm[i : i + 128]
            loss = nn.functional.mse_loss(net(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    mean_y, std_y = float(np.mean(y[train_idx])), float(np.std(y[train_idx]))
    draws = mc_predict(net, data.x_test, samples) * std_y + mean_y  # (T, N), original units
    target = torch.tensor(y[test_idx], dtype=draws.dtype)
    return U.rmse(draws, target).item(), U.regression_log_likelihood(draws, target, tau).item()


def uci_boston(quick: bool, out: Path) -> ClaimResult:
    from mlxtend.data import boston_housing_data

    x, y = boston_housing_data()
    # quick: the paper's 40 epochs; full: the authors' updated protocol, 10x the epochs
    splits, samples, epochs = (5, 200, 40) if quick else (20, 1000, 400)
    rates = (0.005, 0.01, 0.05, 0.1)
    taus = (0.25, 0.5, 0.75)
    paper = {"rmse": (2.97, 0.19), "ll": (-2.46, 0.06)} if quick else {
        "rmse": (2.80, 0.19), "ll": (-2.39, 0.045)}
    rmses, lls, chosen = [], [], []
    for s in range(splits):
        perm = np.random.default_rng(s).permutation(len(x))
        n_train = int(round(0.9 * len(x)))
        train_idx, test_idx = perm[:n_train], perm[n_train:]
        # choose (p, tau) on a validation 20% of the training split, by test log-likelihood
        cut = int(0.8 * n_train)
        best = max(((p, t) for p in rates for t in taus),
                   key=lambda pt: _boston_split(s, x, y, train_idx[:cut], train_idx[cut:],
                                                pt[0], pt[1], epochs, 100)[1])
        r, ll = _boston_split(s, x, y, train_idx, test_idx, best[0], best[1], epochs, samples)
        rmses.append(r)
        lls.append(ll)
        chosen.append(best)
    rm, rs = mean_spread(rmses)
    lm, ls = mean_spread(lls)
    rse, lse = rs / math.sqrt(splits), ls / math.sqrt(splits)
    rmse_ok = abs(rm - paper["rmse"][0]) <= 2 * math.hypot(rse, paper["rmse"][1])
    ll_ok = abs(lm - paper["ll"][0]) <= 2 * math.hypot(lse, paper["ll"][1])
    verdict = REPRODUCED if rmse_ok and ll_ok else NOT
    fig, axes = plt().subplots(1, 2, figsize=(8, 3.2))
    axes[0].hist(rmses, bins=10)
    axes[0].axvline(paper["rmse"][0], color="k", ls="--")
    axes[0].set_title("RMSE per split (dashed: paper)")
    axes[1].hist(lls, bins=10)
    axes[1].axvline(paper["ll"][0], color="k", ls="--")
    axes[1].set_title("test log-likelihood per split")
    fig_path = str(save_figure(fig, out / "result.png"))
    return ClaimResult(
        "uci-boston", CLAIMS_BY_NAME["uci-boston"].description,
        f"Boston housing (mlxtend), {splits} random 90/10 splits, 1 hidden layer of 50 "
        f"ReLU units, dropout on input and hidden, Adam, {epochs} epochs, batch 128; p in "
        f"{rates} and tau in {taus} chosen per split on a 20% validation part; T = "
        f"{samples} MC samples",
        f"RMSE {rm:.2f} ± {rse:.2f}, test LL {lm:.2f} ± {lse:.2f} (± standard error)",
        ("Gal & Ghahramani 2016, Table 1 (40 epochs, hyperparameters by Spearmint): RMSE "
         "2.97 ± 0.19, test LL -2.46 ± 0.06" if quick else
         "Gal's DropoutUncertaintyExps, updated results (400 epochs, grid search as here): "
         "RMSE 2.80 ± 0.19, test LL -2.39 ± 0.045 (standard errors over 20 splits)"),
        verdict,
        ("both numbers lie within 2 combined standard errors of the paper's" if verdict ==
         REPRODUCED else
         f"{'RMSE' if not rmse_ok else 'the log-likelihood'} lies more than 2 combined "
         "standard errors from the published value (their Keras initialisation, splits and, "
         "for 40 epochs, Spearmint tuning differ from this run)"),
        {"rmse": rmses, "ll": lls, "chosen": chosen},
        "quick" if quick else "full", fig_path,
    )


# --- 7. variance-shift -----------------------------------------------------------------


def variance_shift_claim(quick: bool, out: Path) -> ClaimResult:
    from dropkit.diagnostics import variance_shift

    epochs, seeds = (4, 2) if quick else (12, 3)
    data = load_dataset("mnist5k")
    base: dict[str, Any] = dict(dataset="mnist5k", epochs=epochs, dropout=0.5, input_dropout=0.5,
                eval_every=epochs, batch_size=100)
    configs = {"before-bn": TrainConfig(model="cnn-dropout-before-bn", **base),
               "after-bn": TrainConfig(model="cnn", **base)}
    res = _finals(configs, seeds, out, data)
    shifts = {}
    for label, cfg in configs.items():
        ratios = []
        for seed in range(seeds):
            net = load_final(cfg, data, out / "runs" / f"{label}-seed{seed}",
                             torch.Generator().manual_seed(seed))
            torch.manual_seed(seed)
            second_bn = list(variance_shift(net, data.x_test[:500]).values())[1]
            ratios.append(second_bn)
        shifts[label] = ratios
    before, after = mean_spread(shifts["before-bn"])[0], mean_spread(shifts["after-bn"])[0]
    shift_ok = before < 0.9 and abs(after - 1) < abs(before - 1)
    costs, _ = _directional("after-bn", "before-bn", res)
    paired, paired_text = _paired(configs, "after-bn", "before-bn", seeds, out, res, data)
    verdict = DIRECTION if shift_ok and costs else NOT
    figure = _bar(res, out, "dropout before vs after BatchNorm")
    numbers: dict[str, Any] = {**res, "variance_ratio": shifts, "paired": paired}
    return ClaimResult(
        "variance-shift", CLAIMS_BY_NAME["variance-shift"].description,
        f"MNIST-5k, the CNN (conv-BN-ReLU x2) with spatial dropout 0.5 feeding the second "
        f"BatchNorm vs only after it, {epochs} epochs, {seeds} seeds; ratio = Var_eval / "
        "Var_train of the second BatchNorm's input",
        f"variance ratio {before:.3f} (before BN) vs {after:.3f} (after); test error "
        f"{_pm(res['before-bn']['test_error'])} vs {_pm(res['after-bn']['test_error'])}",
        "Li et al. 2019: dropout before BatchNorm shifts the variance between training and "
        "test (ratio below 1) and costs accuracy; dropout after the last BatchNorm does not",
        verdict,
        ("the ratio is far below 1 only with dropout before BatchNorm, and that network "
         "tests worse by more than 2 standard errors" if verdict == DIRECTION else
         "the variance ratio or the cost in test error did not separate the two placements"),
        numbers, "quick" if quick else "full", figure, paired_text,
    )


# --- 8-10. dropconnect, spatial, early-dropout -----------------------------------------


def _two_way(name: str, better: str, worse: str, configs, seeds, setting, published,
             quick: bool, out: Path, data=None, key="test_error") -> ClaimResult:
    res = _finals(configs, seeds, out, data)
    ok, diff = _directional(better, worse, res, key)
    paired, paired_text = _paired(configs, better, worse, seeds, out, res, data)
    percent = key.endswith("error")
    metric = key.replace("_", " ")
    size = f"{100 * abs(diff):.2f} points" if percent else f"{abs(diff):.4f}"
    if ok:
        why = f"{better} is lower than {worse} by {size}, more than 2 standard errors"
    elif diff > 0:
        why = (f"{better} is lower than {worse} by {size}, less than 2 standard errors of the "
               "seeds' spread: not established at this number of seeds")
    else:
        why = f"{better} is not lower than {worse} (higher by {size})"
    return ClaimResult(
        name, CLAIMS_BY_NAME[name].description, setting,
        "; ".join(f"{k}: {metric} {_pm(v[key], percent)}" for k, v in res.items()),
        published, DIRECTION if ok else NOT, why,
        {**res, "paired": paired}, "quick" if quick else "full", _bar(res, out, name, key),
        paired_text,
    )


def dropconnect(quick: bool, out: Path) -> ClaimResult:
    epochs, hidden, seeds = (10, 256, 2) if quick else (60, 800, 3)
    base: dict[str, Any] = dict(epochs=epochs, hidden=hidden, input_dropout=0.0, eval_every=epochs)
    configs = {"dropconnect": TrainConfig(model="mlp-dropconnect", dropout=0.5, **base),
               "dropout": TrainConfig(model="mlp", dropout=0.5, **base)}
    return _two_way(
        "dropconnect", "dropconnect", "dropout", configs, seeds,
        f"MNIST-5k, MLP 784-{hidden}-{hidden}-10 (ReLU), {epochs} epochs, {seeds} seeds; "
        "DropConnect p = 0.5 on the hidden layers' weights vs dropout p = 0.5 on their units",
        "Wan et al. 2013, Table 3 (full MNIST, 5-net ensembles): DropConnect 0.21% vs "
        "dropout 0.27%, a direction only, as those setups differ from this one",
        quick, out,
    )


def spatial(quick: bool, out: Path) -> ClaimResult:
    epochs, seeds = (4, 2) if quick else (12, 3)
    data = load_dataset("mnist5k")
    base: dict[str, Any] = dict(dataset="mnist5k", epochs=epochs, dropout=0.0, input_dropout=0.3,
                eval_every=epochs)
    configs = {"spatial": TrainConfig(model="cnn", **base),
               "element": TrainConfig(model="cnn-element", **base)}
    return _two_way(
        "spatial", "spatial", "element", configs, seeds,
        f"MNIST-5k, the CNN, p = 0.3 after the last conv block, whole feature maps "
        f"(Dropout2d) vs single activations, no other dropout, {epochs} epochs, {seeds} seeds",
        "Tompson et al. 2015 (FLIC pose estimation): spatial dropout generalizes better "
        "than element dropout in CNNs, where neighbouring activations are correlated; a "
        "direction only",
        quick, out, data,
    )


def early_dropout(quick: bool, out: Path) -> ClaimResult:
    # Underfitting means the net cannot fit its training set: 784-8-8-10 keeps a training
    # loss near 0.13 on MNIST-5k, where 784-32-32-10 already drives it to 0.001.
    epochs, seeds = (10, 2) if quick else (20, 3)
    cutoff = max(1, epochs // 4)
    base: dict[str, Any] = dict(epochs=epochs, hidden=8, input_dropout=0.0, eval_every=epochs)
    configs = {
        "early": TrainConfig(dropout=0.1, schedule=f"early:0.1,{cutoff}", **base),
        "none": TrainConfig(dropout=0.0, **base),
        "standard": TrainConfig(dropout=0.1, **base),
    }
    result = _two_way(
        "early-dropout", "early", "none", configs, seeds,
        f"an underfitting net: MNIST-5k, MLP 784-8-8-10, {epochs} epochs, {seeds} seeds; "
        f"early dropout p = 0.1 for the first {cutoff} epochs, then none; standard p = 0.1 "
        "throughout; none",
        "Liu et al. 2023 (ImageNet, underfitting ViT-T): early dropout raises test accuracy "
        "(72.8 to 73.9%) and lowers the final training loss against no dropout, while "
        "standard dropout hurts; a direction only",
        quick, out,
    )
    losses = "; ".join(f"{k}: final training loss {_pm(result.numbers[k]['train_loss'], False)}"
                       for k in configs)
    result.dropkit += f" ({losses})"
    return result


CLAIMS = [
    Claim("lesson-mask", "fraction of zeros is p, mean preserved, train varies, eval does not",
          lesson_mask, True),
    Claim("mnist5k-gap", "dropout lowers test error and the train/test gap on MNIST-5k",
          mnist5k_gap, True),
    Claim("rate-sweep", "test error is flat for p in 0.2-0.6 and rises at the extremes (Fig. 9)",
          rate_sweep, False),
    Claim("data-size", "dropout's gain grows, then shrinks, with the training set (Fig. 10)",
          data_size, False),
    Claim("mc-vs-weight-scaling", "MC averaging matches weight scaling at about k = 50 (Fig. 11)",
          mc_vs_weight_scaling, True),
    Claim("uci-boston", "MC dropout regression on Boston housing (Gal & Ghahramani 2016)",
          uci_boston, False),
    Claim("variance-shift", "dropout before BatchNorm shifts its variance and costs accuracy",
          variance_shift_claim, False),
    Claim("dropconnect", "DropConnect vs dropout on MNIST-5k (Wan et al. 2013, direction)",
          dropconnect, False),
    Claim("spatial", "spatial vs element dropout in a CNN (Tompson et al. 2015, direction)",
          spatial, False),
    Claim("early-dropout", "early dropout helps an underfitting net (Liu et al. 2023)",
          early_dropout, True),
]
CLAIMS_BY_NAME = {c.name: c for c in CLAIMS}


def write_docs(out: Path, docs: Path) -> Path:
    """Regenerate the reproductions page from every result.json under ``out``."""
    results = []
    for claim in CLAIMS:
        path = out / claim.name / "result.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
    lines = [
        "# Reproductions",
        "",
        "Generated by `dropkit reproduce` (do not edit by hand). Each claim: the setting, "
        "dropkit's number with its spread, the published number with its source, and a "
        "verdict. A claim that did not reproduce is reported as such, with the reason.",
        "",
        "Verdicts: *reproduced* when dropkit's number agrees with the published one (within 2 "
        "combined standard errors) or every part of a shape claim holds; *direction "
        "reproduced* when the effect has the published sign and exceeds 2 standard errors "
        "but the setting differs from the paper's; *not reproduced* otherwise. Standard "
        "errors come from the spread over seeds (or splits), and for sweeps from the binomial "
        "noise of the 1,000 test examples. For two-way comparisons of test error the same "
        "difference is also reported paired over the test examples (each example scores "
        "which of the two networks got it wrong, averaged over seeds), which cancels the "
        "examples both get wrong; it is reported beside the verdict and does not change it. "
        "Rerun everything with `dropkit reproduce` "
        "(about 30 minutes on 2 cores) or `dropkit reproduce --quick` (about 2 minutes).",
        "",
        "| claim | mode | verdict |",
        "|---|---|---|",
        *[f"| [{r['claim']}](#{r['claim']}) | {r['mode']} | {r['verdict']} |" for r in results],
        "",
    ]
    for r in results:
        lines += [
            f"## {r['claim']}",
            "",
            f"**Claim.** {r['description']}",
            "",
            f"- **Setting:** {r['setting']}",
            f"- **dropkit:** {r['dropkit']}",
            f"- **Published:** {r['published']}",
            f"- **Verdict:** {r['verdict']}: {r['why']}.",
            *([f"- **Paired over the test set:** {r['paired']}."] if r.get("paired") else []),
            f"- **Run:** {r['mode']} mode, {r.get('date', '')}, {r.get('seconds', 0):.0f} s.",
            "",
        ]
    docs.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(docs, "\n".join(lines))
    return docs


def run_reproduce(
    claims: Sequence[str] = (),
    *,
    quick: bool = False,
    out: str | Path = "runs/reproduce",
    docs: str | Path | None = "docs/REPRODUCTIONS.md",
    log: Callable[[str], None] = print,
) -> list[ClaimResult]:
    """Run the named claims (all when none are named) and write their results."""
    import time

    unknown = [c for c in claims if c not in CLAIMS_BY_NAME]
    if unknown:
        raise UsageError(f"reproduce: unknown claim(s) {unknown}; `dropkit reproduce --list` "
                         "lists them", "claims")
    out = check_writable_dir(out)
    chosen = [CLAIMS_BY_NAME[c] for c in claims] if claims else CLAIMS
    results = []
    for claim in chosen:
        folder = check_writable_dir(out / claim.name / ("quick" if quick else "full"))
        log(f"[{claim.name}] {claim.description} ...")
        start = time.perf_counter()
        result = claim.run(quick, folder)
        result.mode = "quick" if quick else "full"
        payload = {**asdict(result), "seconds": time.perf_counter() - start,
                   "date": datetime.date.today().isoformat()}
        atomic_write_json(out / claim.name / "result.json", payload)
        log(f"  dropkit:   {result.dropkit}")
        log(f"  published: {result.published}")
        log(f"  verdict:   {result.verdict}: {result.why} ({payload['seconds']:.0f} s)")
        results.append(result)
    if docs is not None:
        log(f"wrote {write_docs(out, Path(docs))}")
    return results
