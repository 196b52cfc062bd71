"""The HTML report, rendered by a real headless browser, shows its plots."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dropkit.app.experiments.compare import run_compare
from dropkit.app.experiments.engine import RunOptions

pytestmark = pytest.mark.slow  # trains models or runs subprocesses: make test runs it


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def _shows_plots(report: Path, tmp_path: Path) -> None:
    """A headless browser's screenshot of ``report`` holds plot lines."""
    shot = tmp_path / "shot.png"
    subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
         "--window-size=1000,2600", f"--screenshot={shot}", report.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    from matplotlib.image import imread

    pixels = (imread(shot)[..., :3] * 255).round().astype(int)
    # matplotlib's first two line colours (C0 blue, C1 orange) exist only inside the plots
    for rgb in ((31, 119, 180), (255, 127, 14)):
        hits = (np.abs(pixels - np.array(rgb)).sum(-1) <= 30).sum()
        assert hits > 200, f"the screenshot shows no plot line of colour {rgb}"
    shutil.copy(shot, report.parent / "screenshot.png")


NO_BROWSER = "no chromium on this machine (.ci/run installs Debian's chromium; elsewhere: " \
    "apt-get install chromium)"


@pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)
def test_report_renders_with_its_plots(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    options = RunOptions(epochs=2, out=out, progress=False, log=lambda *_: None,
                         overrides={"train_size": 300, "hidden": 32, "batch_size": 50})
    run_compare(options, seeds=1)
    _shows_plots(out / "report.html", tmp_path)


@pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)
def test_the_evaluate_report_renders_with_its_plots(tmp_path: Path) -> None:
    from dropkit.app.experiments.evaluate import run_evaluate

    out = tmp_path / "ev"
    options = RunOptions(epochs=1, out=out, progress=False, log=lambda *_: None,
                         overrides={"train_size": 300, "hidden": 32})
    run_evaluate(options, members=2, samples=4, quick=True, held_out_classes=False)
    _shows_plots(out / "report.html", tmp_path)
