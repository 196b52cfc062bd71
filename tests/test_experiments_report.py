"""The HTML report and its helpers: self-contained, escaped, atomic."""

from __future__ import annotations

import math

import pytest

from dropkit.app.experiments import report


def test_mean_spread_is_the_sample_standard_deviation() -> None:
    assert report.mean_spread([2.0]) == (2.0, 0.0)
    mean, sd = report.mean_spread([1.0, 2.0, 3.0])
    assert mean == 2.0 and sd == pytest.approx(1.0)  # n - 1 in the denominator


def test_pct() -> None:
    assert report.pct(0.0365) == "3.65%" and report.pct(math.nan) == "n/a"


def test_tables_escape_what_they_show() -> None:
    table = report.table_html(["a<b"], [["<script>", 1]])
    assert "<script>" not in table and "&lt;script&gt;" in table and "a&lt;b" in table


def test_report_is_one_file_with_its_plots_inline(tmp_path) -> None:
    fig, ax = report.plt().subplots()
    ax.plot([0, 1], [1, 0])
    png = report.save_figure(fig, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = report.write_report(tmp_path / "r.html", "T & co", ["read me"],
                               [(["k"], [["v"]])], [(png, "a plot")], {"epochs": 3})
    text = page.read_text()
    assert "<title>T &amp; co</title>" in text and "data:image/png;base64," in text
    assert "<td>epochs</td><td>3</td>" in text


def test_one_table_printer_fits_an_80_column_terminal() -> None:
    # regression: `dropkit uncertainty` padded every column to 30 characters and wrapped
    lines: list[str] = []
    report.print_table(["out-of-distribution set", "AUROC (entropy)",
                        "AUROC (mutual information)"],
                       [["rotated digits", "0.919", "0.922"], ["uniform noise", "0.990", "0.964"]],
                       lines.append)
    report.print_table(["prediction", "test error %", "ECE", "NLL"],
                       [["weight scaling (deterministic)", "3.60", "0.0224", "0.1234"],
                        ["MC dropout, T = 100", "3.50", "0.0164", "0.1200"]], lines.append)
    assert max(len(line) for line in lines) <= 80
    assert lines[1].startswith("-----------------------  ---------------")  # the rule
    assert lines[2].index("0.919") == lines[0].index("AUROC (entropy)")  # columns aligned
