"""The integrations load their frameworks only on request, and say what to install."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


def test_import_dropkit_imports_no_framework() -> None:
    out = _python("import sys, dropkit, dropkit.integrations; "
                  "print([m for m in ('lightning', 'transformers', 'accelerate') "
                  "if m in sys.modules])")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("module", "blocked", "extra"), [
    ("lightning", "lightning", "dropkit[lightning]"),
    ("transformers", "transformers", "dropkit[transformers]"),
])
def test_a_missing_framework_names_the_extra(module: str, blocked: str, extra: str) -> None:
    out = _python(f"import sys; sys.modules[{blocked!r}] = None; "
                  f"import dropkit.integrations.{module}")
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: dropkit.integrations.") and extra in last
