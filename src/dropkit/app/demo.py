"""Dropout's worked examples (a 4-neuron layer at p = 0.5, the inverted-dropout
identities, train vs eval), computed live with dropkit.

Run::

    dropkit demo --seed 0
    python -m dropkit demo
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from dropkit._checks import check_int
from dropkit.app.models import MLPWithDropout
from dropkit.functional import dropout, dropout2d

__all__ = ["run_demo", "mask_statistics", "train_eval_spread", "RATES"]

RATES = (0.1, 0.2, 0.5, 0.8)

EXAMPLE_ACTIVATIONS = [2.0, 3.5, 1.2, 4.1]


def _fmt(values: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in values.tolist()) + "]"


def _section(out: Callable[[str], None], title: str) -> None:
    out("")
    out(title)
    out("-" * len(title))


def mask_statistics(
    n: int, generator: torch.Generator, rates: tuple[float, ...] = RATES
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Dropout of ``n`` elements drawn U(0.5, 1.5) at each rate: the fraction of zeros and
    the output mean, each with its distance from the expected value in standard errors.

    The inverted-dropout identities say the fraction is ``p`` (standard error
    ``sqrt(p (1 - p) / n)``) and ``E[output] = input`` (the output's standard deviation
    is ``sqrt(E[x^2] / (1 - p) - E[x]^2)``). Returns the input and one row per rate.
    """
    x = torch.rand(n, generator=generator) + 0.5  # strictly positive: a zero is a drop
    xd = x.double()
    rows = []
    for p in rates:
        y = dropout(x, p, generator=generator).double()
        zeros = (y == 0).double().mean().item()
        sd_y = math.sqrt((xd**2).mean().item() / (1 - p) - xd.mean().item() ** 2)
        rows.append({
            "p": p, "zeros": zeros, "half_band": 5 * math.sqrt(p * (1 - p) / n),
            "z_zeros": abs(zeros - p) / math.sqrt(p * (1 - p) / n),
            "out_mean": y.mean().item(), "mean_ratio": y.mean().item() / xd.mean().item(),
            "z_mean": abs(y.mean().item() - xd.mean().item()) / (sd_y / math.sqrt(n)),
        })
    return x, rows


def train_eval_spread(generator: torch.Generator, passes: int = 5) -> tuple[float, float]:
    """The spread of an ``MLPWithDropout``'s outputs over ``passes`` passes of one input, in
    train mode (dropout samples: above 0) and in eval mode (exactly 0)."""
    model = MLPWithDropout(hidden_size=256, generator=generator)
    sample = torch.randn(1, 784, generator=generator)
    with torch.no_grad():
        model.train()
        train_std = torch.stack([model(sample) for _ in range(passes)]).std(0).mean().item()
        model.eval()
        eval_std = torch.stack([model(sample) for _ in range(passes)]).std(0).mean().item()
    return train_std, eval_std


def run_demo(seed: int = 0, out: Callable[[str], None] = print) -> dict[str, object]:
    """Print the worked examples computed by dropkit; return the numbers shown."""
    g = torch.Generator().manual_seed(check_int("demo", seed, "seed", 0, 2**64))
    results: dict[str, object] = {}
    out(f"dropkit demo: dropout's worked examples, computed live (seed {seed})")

    _section(out, "1. A 4-neuron layer at p = 0.5 (kept units are scaled by 2)")
    a = torch.tensor(EXAMPLE_ACTIVATIONS)
    out(f"activations        {_fmt(a)}")
    iterations = []
    for i in range(1, 4):
        y = dropout(a, 0.5, generator=g)
        mask = (y != 0).int()
        iterations.append((mask.tolist(), y.tolist()))
        out(f"train iteration {i}  mask {mask.tolist()}  ->  {_fmt(y)}")
    out(f"test (eval)        no mask       ->  {_fmt(dropout(a, 0.5, training=False))}")
    results["iterations"] = iterations

    n = 1_000_000
    _section(out, f"2. Over {n:,} elements: fraction of zeros is p, the mean is preserved")
    out(f"{'p':>5} {'zeros':>9} {'5-sigma band':>19} {'input mean':>11} {'output mean':>12}")
    x, rows = mask_statistics(n, g)
    for r in rows:
        p, half = r["p"], r["half_band"]
        out(
            f"{p:>5.1f} {r['zeros']:>9.5f} [{p - half:.5f}, {p + half:.5f}] "
            f"{x.mean().item():>11.5f} {r['out_mean']:>12.5f}"
        )
    results["fractions"] = rows

    _section(out, "3. MLPWithDropout: train-mode outputs vary, eval-mode outputs are identical")
    torch.manual_seed(seed)  # the layers' initialisation
    train_std, eval_std = train_eval_spread(g)
    out(f"std over 5 passes, train mode: {train_std:.4f}")
    out(f"std over 5 passes, eval mode:  {eval_std:.4f}")
    results["train_std"], results["eval_std"] = train_std, eval_std

    _section(out, "4. Spatial dropout (p = 0.3) zeroes whole channels of (2, 64, 32, 32)")
    fmap = torch.rand(2, 64, 32, 32, generator=g) + 0.5
    y = dropout2d(fmap, 0.3, generator=g)
    per_channel = y.flatten(2)
    whole = int((per_channel == 0).all(-1).sum())
    partial = int(((per_channel == 0).any(-1) & ~(per_channel == 0).all(-1)).sum())
    out(f"channels entirely zero: {whole} of 128 (expected about {0.3 * 128:.0f})")
    out(f"channels partly zero:   {partial}")
    results["channels_dropped"], results["channels_partial"] = whole, partial
    return results
