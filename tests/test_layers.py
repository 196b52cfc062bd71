"""The layout's rule: a module imports only from its own layer or the layers below it
(ARCHITECTURE.md). Read from the source, lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src"
PACKAGE = SRC / "dropkit"
# lowest first; the public face (the package and its public-path modules) sits between the
# library and the application
LAYERS = ["private", "mask", "functional", "seeded", "nn", "tools", "inference",
          "integrations", "face", "app"]
FACE = {"dropkit", "dropkit.acquisition", "dropkit.uncertainty", "dropkit.schedules"}


def _layer(module: str) -> str:
    parts = module.split(".")
    if module in FACE:
        return "face"
    if len(parts) == 1 or parts[1].startswith("_") and parts[1] != "__main__":
        return "private"
    if parts[1] in ("errors", "reference"):
        return "private"
    if parts[1] == "__main__":
        return "app"
    return parts[1]


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every dropkit module ``path`` imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("dropkit")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("dropkit"):
            for alias in node.names:  # `from dropkit import mask`: the submodule
                sub = f"{node.module}.{alias.name}"
                is_module = (SRC / Path(*sub.split("."))).with_suffix(".py").exists() or \
                    (SRC / Path(*sub.split("."))).is_dir()
                found.append((node.lineno, sub if is_module else node.module))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_known_layer() -> None:
    assert {_layer(_name(p)) for p in MODULES} <= set(LAYERS)
    assert len(MODULES) > 60


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_up_a_layer(path: Path) -> None:
    mine = LAYERS.index(_layer(_name(path)))
    upward = [f"line {line}: {module} ({_layer(module)})" for line, module in _imports(path)
              if LAYERS.index(_layer(module)) > mine]
    assert upward == [], f"{_name(path)} ({LAYERS[mine]}) imports a higher layer"


def test_no_application_module_in_the_library_root() -> None:
    root = {p.stem for p in PACKAGE.glob("*.py")}
    assert not root & {"cli", "demo", "models", "experiments"}
