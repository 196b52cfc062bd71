"""Plots and the self-contained HTML report of an experiment."""

from __future__ import annotations

import base64
import html
import io
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dropkit.app.experiments.io import atomic_write_bytes, atomic_write_text

__all__ = ["mean_spread", "save_figure", "write_report", "plt"]


def plt():
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def save_figure(fig: Any, path: Path) -> Path:
    """Save a PNG atomically and close the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt().close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    label = html.escape(alt)
    return (f'<figure><img alt="{label}" src="data:image/png;base64,{data}">'
            f"<figcaption>{label}</figcaption></figure>")


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(
    path: Path,
    title: str,
    reading: Sequence[str],
    tables: Sequence[tuple[Sequence[str], Sequence[Sequence[Any]]]],
    figures: Sequence[tuple[Path, str]],
    settings: dict[str, Any],
) -> Path:
    """One HTML file with everything inline (plots as base64 PNG): it opens anywhere."""
    style = (
        "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;"
        "color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:4px 10px;text-align:right}th{background:#f3f3f3}figure{margin:1em 0}"
        "img{max-width:100%}figcaption{color:#555;font-size:90%}code{background:#f6f6f6}"
    )
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts.append("<h2>Reading</h2>" + "".join(f"<p>{html.escape(s)}</p>" for s in reading))
    parts.append("<h2>Results</h2>" + "".join(table_html(h, r) for h, r in tables))
    parts.append("<h2>Plots</h2>" + "".join(_img(p, alt) for p, alt in figures))
    parts.append("<h2>Settings</h2>" + table_html(
        ["setting", "value"], [(k, v) for k, v in sorted(settings.items())]))
    parts.append("</body></html>\n")
    atomic_write_text(path, "".join(parts))
    return path


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                log: Callable[[str], None] = print) -> None:
    """The terminal table every command prints: each column as wide as its widest cell,
    two spaces between columns, a rule under the header (what fits 80 columns fits)."""
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in [cells[0], ["-" * w for w in widths], *cells[1:]]:
        log("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def reliability_diagram(calibrations: dict[str, Any], path: Path) -> Path:
    """Accuracy against confidence per bin for each predictor (a
    :class:`dropkit.uncertainty.Calibration` each), beside the diagonal."""
    fig, ax = plt().subplots(figsize=(5.5, 5))
    first = next(iter(calibrations.values()))
    edges = first.bin_edges.numpy()
    centers = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0]) / (len(calibrations) + 1)
    offset = (len(calibrations) - 1) / 2
    for i, (name, cal) in enumerate(calibrations.items()):
        ax.bar(centers + (i - offset) * width, cal.accuracy.nan_to_num(0).numpy(), width,
               label=f"{name} (ECE {cal.ece:.3f})", alpha=0.75)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}%"
