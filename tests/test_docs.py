"""The documentation site builds strictly and offline, and a page renders in a browser."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")

pytestmark = pytest.mark.slow  # a full Sphinx build: make test runs it

DOCS = Path(__file__).parent.parent / "docs"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "html"
    # -W: any warning fails; -n: every cross-reference must resolve; no network is used
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-W", "--keep-going", "-n",
                           "-b", "html", str(DOCS), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_every_public_name_has_a_page(site: Path) -> None:
    import dropkit
    import dropkit.functional
    import dropkit.nn

    html = "".join(p.read_text(encoding="utf-8") for p in site.rglob("*.html"))
    names = [f"dropkit.{n}" for n in dropkit.__all__ if n not in ("__version__",)]
    names += [f"dropkit.functional.{n}" for n in dropkit.functional.__all__]
    names += [f"dropkit.nn.{n}" for n in dropkit.nn.__all__]
    missing = [n for n in names if f'id="{n}"' not in html and not
               (n.count(".") == 1 and f'id="module-{n}"' in html)]
    assert missing == []


def test_functions_and_modules_link_to_each_other(site: Path) -> None:
    nn = (site / "api" / "nn.html").read_text(encoding="utf-8")
    functional = (site / "api" / "functional.html").read_text(encoding="utf-8")
    assert 'href="functional.html#dropkit.functional.dropout2d"' in nn
    assert 'href="nn.html#dropkit.nn.Dropout2d"' in functional


def test_the_guides_come_from_the_readme(site: Path) -> None:
    text = re.sub(r"<[^>]+>", "", (site / "guides" / "checkpointing.html").read_text("utf-8"))
    assert "SeedPlan gives every dropout site a generator of its own" in text


@pytest.mark.skipif(BROWSER is None, reason="no chromium on this machine (.ci/run installs "
                    "Debian's chromium; elsewhere: apt-get install chromium)")
def test_a_page_renders_in_a_browser(site: Path, tmp_path: Path) -> None:
    flags = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
             "--window-size=1200,1400"]
    page = (site / "api" / "nn.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert "dropkit.nn." in dom and "Dropout" in dom  # the rendered DOM holds the API
    shot = tmp_path / "nn.png"
    subprocess.run([*flags, f"--screenshot={shot}", page], capture_output=True, check=True,
                   timeout=120)
    from matplotlib.image import imread

    pixels = (imread(shot)[..., :3] * 255).round().astype(int)
    dark = (pixels.sum(-1) < 200).mean()  # text: the page is neither blank nor all dark
    assert 0.01 < dark < 0.5, f"share of dark pixels {dark:.3f}"
    # the theme's stylesheet loaded: the sidebar's background is not the page's white
    assert (np.abs(pixels[700, 50] - 255).sum()) > 0
