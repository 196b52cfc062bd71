"""``dropkit sweep``: test error against the drop probability (Srivastava et al. 2014, Fig. 9).

Run::

    dropkit sweep --rates 0 0.2 0.4 0.5 0.6 0.8 0.9 --epochs 20 --out runs/sweep
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from dropkit._checks import check_int, check_probability
from dropkit.app.experiments.compare import DropoutRates, run_grid
from dropkit.app.experiments.engine import RunOptions
from dropkit.app.experiments.io import atomic_write_json, check_manifest
from dropkit.app.experiments.report import mean_spread, plt, print_table, save_figure, write_report
from dropkit.errors import UsageError

__all__ = ["run_sweep", "DEFAULT_RATES"]

DEFAULT_RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def run_sweep(
    options: RunOptions | None = None,
    *,
    rates: Sequence[float] = DEFAULT_RATES,
    input_dropout: float = 0.2,
    seeds: int = 1,
) -> dict[str, Any]:
    """Train one network per hidden drop probability; plot test and train error against it.

    ``options``: as :func:`dropkit.app.experiments.compare.run_compare` (epochs default 20,
    folder runs/sweep).
    """
    options = options if options is not None else RunOptions()
    log = options.log
    for p in rates:
        if not 0 <= p < 1:
            raise UsageError(f"sweep: expected `rates` to be drop probabilities in [0, 1), "
                             f"got {p}", "rates")
    check_probability("sweep", input_dropout, name="input_dropout", allow_one=False)
    check_int("sweep", seeds, "seeds", 1)
    base, out, data = options.prepare(20, "runs/sweep")
    check_manifest(out, "sweep", {**asdict(base), "seeds": seeds, "rates": list(rates),
                                  "input_dropout": input_dropout})
    log(f"dropkit sweep: {base.dataset}, hidden p in {list(rates)}, input p {input_dropout}, "
        f"{base.epochs} epochs, {seeds} seed(s) -> {out}")
    specs = [DropoutRates(input_dropout, p) for p in rates]
    results = run_grid(specs, seeds, base, out, data=data, progress=options.progress, log=log)
    rows = []
    for p, r in zip(rates, results, strict=True):
        tm, ts = mean_spread(r["test_error"])
        rm, _ = mean_spread(r["train_error"])
        rows.append([f"{p:g}", f"{100 * rm:.2f}", f"{100 * tm:.2f} ± {100 * ts:.2f}"])
    header = ["hidden p (drop)", "train error %", "test error %"]
    print_table(header, rows, log)
    fig, ax = plt().subplots(figsize=(6.5, 4))
    tests = [mean_spread(r["test_error"]) for r in results]
    ax.errorbar(rates, [100 * m for m, _ in tests], [100 * s for _, s in tests], marker="o",
                label="test error", capsize=3)
    ax.plot(rates, [100 * mean_spread(r["train_error"])[0] for r in results], marker="s",
            ls="--", label="train error")
    ax.set_xlabel("probability of dropping a hidden unit, p")
    ax.set_ylabel("error %")
    ax.set_title("Error against the drop rate (cf. Srivastava et al. 2014, Fig. 9)")
    ax.grid(alpha=0.3)
    ax.legend()
    plot = save_figure(fig, out / "sweep.png")
    best = min(range(len(rates)), key=lambda i: tests[i][0])
    reading = [
        f"The lowest test error, {100 * tests[best][0]:.2f}%, came at p = {rates[best]:g}. "
        "Srivastava et al. 2014 (Fig. 9) found test error flat for p between about 0.2 and "
        "0.6 (their p is the keep probability; here p is the drop probability) and rising "
        "at the extremes: too little dropout overfits, too much underfits.",
    ]
    settings = {**asdict(base), "seeds": seeds, "input_dropout": input_dropout}
    payload = {"settings": settings, "rates": list(rates), "results": results,
               "reading": reading}
    atomic_write_json(out / "results.json", payload)
    report = write_report(out / "report.html", f"dropkit sweep: drop rate on {base.dataset}",
                          reading, [(header, rows)], [(plot, "Error against p")], settings)
    log(reading[0])
    log(f"report: {report}")
    return payload
