"""The ``mask-statistics`` claim: the inverted-dropout identities hold (the fraction of
zeros is p, the mean is preserved), train-mode outputs vary and eval-mode outputs do not.

The same computation as ``dropkit demo`` (:func:`dropkit.app.demo.mask_statistics`), judged.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from dropkit.app.demo import mask_statistics, train_eval_spread
from dropkit.app.experiments.report import plt, save_figure
from dropkit.app.experiments.reproduce.registry import ClaimResult, Verdict, claim
from dropkit.app.experiments.reproduce.sources import SRIVASTAVA


@claim("mask-statistics",
       "fraction of zeros is p, mean preserved, train varies, eval does not",
       fast=True)
def mask_statistics_claim(quick: bool, out: Path) -> ClaimResult:
    g = torch.Generator().manual_seed(0)
    n = 10**6
    _, rows = mask_statistics(n, g)
    torch.manual_seed(0)  # the layers' initialisation
    train_std, eval_std = train_eval_spread(g)
    ok = all(r["z_zeros"] <= 5 and r["z_mean"] <= 5 for r in rows)
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
        setting="10^6 elements U(0.5, 1.5) per rate; MLPWithDropout 784-256-256-10, 5 passes",
        dropkit=f"{text}; std over passes: train {train_std:.4f}, eval {eval_std:.4f}",
        published=(f"{SRIVASTAVA}, Sec. 4 and Fig. 2 (each unit kept with probability 1 - p, "
                   "the expected output preserved by scaling the weights at test time; here "
                   "inverted, as torch scales in training): fraction of zeros = p, "
                   "E[output] = input, the eval network deterministic"),
        verdict=Verdict.REPRODUCED if ok else Verdict.CONTRADICTED,
        why=("every fraction and mean lies within 5 standard errors of its expected value, and "
             "eval-mode outputs are identical" if ok else
             "a fraction or a mean lies more than 5 standard errors from its expected value, "
             "or eval-mode outputs vary"),
        power=(f"a property test, not an effect: at {n:,} elements a fraction's standard "
               f"error is at most {0.5 / math.sqrt(n):.4f}, so a fraction off by "
               f"{2.5 / math.sqrt(n):.4f} (5 standard errors) is flagged"),
        numbers={"rates": rows, "train_std": train_std, "eval_std": eval_std},
        figure=figure,
    )
