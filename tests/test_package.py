"""The package as a user gets it: an sdist and a wheel that install into a fresh
virtualenv (with the pinned torch) and run."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import dropkit

pytestmark = pytest.mark.slow  # builds, and installs torch into a new virtualenv

ROOT = Path(__file__).parent.parent


def _run(*cmd: object, cwd: Path = ROOT) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    return out


def test_sdist_and_wheel_build_and_pass_twine(dist: Path) -> None:
    version = dropkit.__version__
    names = sorted(p.name for p in dist.iterdir())
    assert names == [f"dropkit-{version}-py3-none-any.whl", f"dropkit-{version}.tar.gz"]
    assert "PASSED" in _run(sys.executable, "-m", "twine", "check", *sorted(dist.iterdir()))


def test_the_wheel_ships_the_package_and_nothing_else(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    files = zipfile.ZipFile(wheel).namelist()
    assert "dropkit/py.typed" in files and "dropkit/tools/sites.py" in files
    top = {f.split("/")[0] for f in files}
    assert top == {"dropkit", f"dropkit-{dropkit.__version__}.dist-info"}  # no tests, data


def test_the_wheel_installs_in_a_clean_virtualenv_and_runs(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python, cli = venv / "bin" / "python", venv / "bin" / "dropkit"
    (wheel,) = dist.glob("*.whl")
    _run(python, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", wheel)
    assert "usage: dropkit" in _run(cli, "--help")
    assert "fraction of zeros is p" in _run(cli, "demo")
    out = _run(python, "-c", "import dropkit, dropkit.nn, sys; "
               "print(dropkit.__version__, 'transformers' in sys.modules)")
    assert out.split() == [dropkit.__version__, "False"]
