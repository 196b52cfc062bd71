"""``dropkit compare``: the same network trained without and with dropout, side by side.

Run::

    dropkit compare                                   # MNIST-5k, no dropout vs 0.2 in / 0.5 hidden
    dropkit compare --rates 0 0.5 0.2/0.5 --seeds 3 --epochs 60 --out runs/compare

Re-running the same command continues where a killed run stopped: every training run
has its own resumable folder under ``OUT/runs``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dropkit._checks import check_int
from dropkit.app.experiments.data import Dataset
from dropkit.app.experiments.engine import RunOptions, TrainConfig, train_seeds, validation_split
from dropkit.app.experiments.io import atomic_write_json, check_manifest
from dropkit.app.experiments.report import (
    mean_spread,
    pct,
    plt,
    print_table,
    save_figure,
    write_report,
)
from dropkit.errors import UsageError

__all__ = ["DropoutRates", "parse_rate", "run_compare", "run_grid", "summarize"]


@dataclass(frozen=True)
class DropoutRates:
    """Input and hidden drop probabilities of one configuration."""

    input: float
    hidden: float

    @property
    def label(self) -> str:
        if self.input == 0 and self.hidden == 0:
            return "no dropout"
        return f"dropout {self.input:g} in / {self.hidden:g} hidden"

    @property
    def slug(self) -> str:
        return f"in{self.input:g}-hid{self.hidden:g}"


def parse_rate(text: str) -> DropoutRates:
    """``"0"``: none; ``"0.5"``: hidden 0.5, no input dropout; ``"0.2/0.5"``: input / hidden."""
    parts = text.split("/")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        raise UsageError(f"parse_rate: expected `rates` as P or INPUT/HIDDEN drop "
                         f"probabilities, got {text!r}", "rates") from None
    if len(values) > 2 or not all(0 <= v < 1 for v in values):
        raise UsageError(f"parse_rate: expected `rates` as P or INPUT/HIDDEN with each in "
                         f"[0, 1), got {text!r}", "rates")
    return DropoutRates(values[0], values[1]) if len(values) == 2 else DropoutRates(0.0, values[0])


def run_grid(
    specs: Sequence[DropoutRates],
    seeds: int,
    base: TrainConfig,
    out: Path,
    *,
    data: Dataset,
    progress: bool,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Train every spec under every seed (resumably); return one summary per spec."""
    by_slug = {spec.slug: spec for spec in specs}
    configs = {
        spec.slug: TrainConfig(**{**asdict(base), "dropout": spec.hidden,
                                  "input_dropout": spec.input})
        for spec in specs
    }

    def report(slug: str, seed: int, history: list[dict[str, Any]]) -> None:
        last = history[-1]
        log(f"  {by_slug[slug].label}, seed {seed}: train error {pct(last['train_error'])}, "
            f"test error {pct(last['test_error'])}")

    histories = train_seeds(
        configs, seeds, out, data=data, progress=progress, on_run=report,
        log=lambda msg: log(msg) if msg.startswith("resuming") else None,
    )
    return [summarize(by_slug[slug], h) for slug, h in histories.items()]


def summarize(spec: DropoutRates, histories: list[list[dict[str, Any]]]) -> dict[str, Any]:
    final = [h[-1] for h in histories]
    keys = ["train_error", "test_error", "eval_train_loss", "test_loss"]
    if all("val_loss" in r for h in histories for r in h):  # a validation split was held out
        keys += ["val_error", "val_loss"]
    curves = {
        key: [sum(h[e][key] for h in histories) / len(histories) for e in range(len(histories[0]))]
        for key in keys
    }
    return {
        "label": spec.label, "input_dropout": spec.input, "dropout": spec.hidden,
        "train_error": [r["train_error"] for r in final],
        "test_error": [r["test_error"] for r in final],
        "gap": [r["test_error"] - r["train_error"] for r in final],
        "curves": curves,
    }


def _curves(results: list[dict[str, Any]], out: Path, key: str, ylabel: str) -> Path:
    fig, ax = plt().subplots(figsize=(7, 4.2))
    for i, r in enumerate(results):
        color = f"C{i}"
        train_key = "train_error" if key == "error" else "eval_train_loss"
        test_key = "test_error" if key == "error" else "test_loss"
        epochs = range(1, len(r["curves"][test_key]) + 1)
        ax.plot(epochs, r["curves"][test_key], color=color, label=f"{r['label']}: test")
        ax.plot(epochs, r["curves"][train_key], color=color, ls="--", label=f"{r['label']}: train")
        val = r["curves"].get(f"val_{key}")
        if val is not None:
            ax.plot(epochs, val, color=color, ls=":", label=f"{r['label']}: validation")
            # where early stopping on the mean validation loss would keep the weights
            losses = r["curves"]["val_loss"]
            best = 1 + min(range(len(losses)), key=losses.__getitem__)
            ax.axvline(best, color=color, lw=0.8, alpha=0.6)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if key == "error":
        ax.set_yscale("symlog", linthresh=0.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    title = f"Train (dashed) and test (solid) {key}: the gap is overfitting"
    if any("val_loss" in r["curves"] for r in results):
        title += "\nvalidation dotted; vertical line: least validation loss"
    ax.set_title(title, fontsize=10)
    return save_figure(fig, out / f"{key}_curves.png")


def table_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        cells = [r["label"]]
        for key in ("train_error", "test_error", "gap"):
            m, s = mean_spread(r[key])
            cells.append(f"{100 * m:.2f} ± {100 * s:.2f}")
        rows.append(cells)
    return rows


HEADER = ["configuration", "train error %", "test error %", "gap (test - train) %"]


def run_compare(
    options: RunOptions | None = None,
    *,
    rates: Sequence[str] = ("0", "0.2/0.5"),
    seeds: int = 2,
) -> dict[str, Any]:
    """Train without and with dropout, print the table, write results, plots and report.

    ``options``: the data set, model, epochs (default 60), folder (default runs/compare),
    progress, log and further training settings (:class:`RunOptions`).
    """
    options = options if options is not None else RunOptions()
    log = options.log
    specs = [parse_rate(r) for r in rates]
    check_int("compare", seeds, "seeds", 1)
    base, out, data = options.prepare(60, "runs/compare")
    check_manifest(out, "compare", {**asdict(base), "seeds": seeds, "rates": list(rates)})
    log(f"dropkit compare: {base.dataset}, {base.model}, {base.epochs} epochs, {seeds} seed(s) "
        f"-> {out}")
    results = run_grid(specs, seeds, base, out, data=data, progress=options.progress, log=log)
    rows = table_rows(results)
    log("")
    print_table(HEADER, rows, log)
    figures = [
        (_curves(results, out, "error", "error rate"), "Learning curves: error per epoch"),
        (_curves(results, out, "loss", "cross-entropy"), "Learning curves: loss per epoch"),
    ]
    size = min(base.train_size or len(data.x_train), len(data.x_train))
    n_train = len(validation_split(size, base.val_fraction)[0])  # less the validation split
    reading = _reading(results, n_train, len(data.x_test))
    settings = {k: v for k, v in asdict(base).items() if k not in ("dropout", "input_dropout")}
    settings = {**settings, "seeds": seeds, "rates": list(rates),
                "train examples": n_train, "test examples": len(data.x_test)}
    payload = {"settings": settings, "results": results, "reading": reading}
    atomic_write_json(out / "results.json", payload)
    report = write_report(out / "report.html", f"dropkit compare: dropout on {base.dataset}",
                          reading, [(HEADER, rows)], figures, settings)
    log("")
    for line in reading:
        log(line)
    log(f"\nreport: {report}")
    return payload


def _reading(results: list[dict[str, Any]], n_train: int, n_test: int) -> list[str]:
    base = next((r for r in results if r["dropout"] == 0 and r["input_dropout"] == 0), None)
    lines = []
    for r in results:
        if r is base or base is None:
            continue
        t0, _ = mean_spread(base["test_error"])
        t1, _ = mean_spread(r["test_error"])
        g0, _ = mean_spread(base["gap"])
        g1, _ = mean_spread(r["gap"])
        verb = "lowered" if t1 < t0 else "did not lower"
        lines.append(
            f"With {r['label']}, the test error went from {100 * t0:.2f}% to {100 * t1:.2f}% "
            f"({verb} it) and the generalization gap from {100 * g0:.2f} to {100 * g1:.2f} "
            "points."
        )
    lines.append(
        f"Trained on {n_train} examples, tested on {n_test}; a small "
        "training set lets the unregularized network memorize it (train error near 0) "
        "while its test error stays high. Dropout trains an ensemble of thinned networks "
        "that share weights (Srivastava et al. 2014), which should narrow that gap; the "
        "numbers above say whether it did here."
    )
    return lines
