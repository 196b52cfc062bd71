"""Import paths that moved when the package took its layered layout (version 0.2).

Each old path still imports, with a ``DeprecationWarning`` naming the new one, for one
release: ``import dropkit.mc`` gives the module ``dropkit.inference.mc`` itself (the same
object, so patching either patches both), and so does every submodule below an old path
(``dropkit.experiments.engine`` is ``dropkit.app.experiments.engine``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

__all__ = ["MOVED", "new_name", "install", "attribute"]

MOVED = {
    "dropkit.sites": "dropkit.tools.sites",
    "dropkit.rates": "dropkit.tools.rates",
    "dropkit.scheduler": "dropkit.tools.scheduler",
    "dropkit.diagnostics": "dropkit.tools.diagnostics",
    "dropkit.seed_plan": "dropkit.tools.seed_plan",
    "dropkit.patch": "dropkit.tools.patch",
    "dropkit.mc": "dropkit.inference.mc",
    "dropkit.consistent": "dropkit.inference.consistent",
    "dropkit.rdrop": "dropkit.inference.rdrop",
    "dropkit.sampling": "dropkit.inference.sampling",
    "dropkit.cli": "dropkit.app.cli",
    "dropkit.demo": "dropkit.app.demo",
    "dropkit.models": "dropkit.app.models",
    "dropkit.experiments": "dropkit.app.experiments",
}


def new_name(fullname: str) -> str | None:
    """Where the module ``fullname`` lives now, or None if it did not move."""
    for old, new in MOVED.items():
        if fullname == old or fullname.startswith(old + "."):
            return new + fullname[len(old):]
    return None


def _moved(old: str, new: str) -> ModuleType:
    warnings.warn(f"{old} moved to {new}; the old path works until dropkit 0.3",
                  DeprecationWarning, stacklevel=3)
    return importlib.import_module(new)


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return _moved(spec.name, self.new)

    def exec_module(self, module: ModuleType) -> None:
        pass  # the new module ran already


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        new = new_name(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


# Public names of the package that an old module path shares: ``dropkit.patch`` is the
# function, and importing the old path ``dropkit.patch`` must not set the module there.
SHADOWED = frozenset({"patch"})


class _Package(ModuleType):
    """The package's module type: it keeps a public name that an old path shares."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SHADOWED and isinstance(value, ModuleType) and name in self.__dict__:
            return  # the import system setting the moved module: keep the public name
        super().__setattr__(name, value)


def install() -> None:
    """Put the finder of the old paths on ``sys.meta_path`` (once), and keep the package's
    public names that old paths share."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())  # before the path finder: no second copy
    sys.modules["dropkit"].__class__ = _Package


def attribute(name: str) -> ModuleType:
    """``dropkit.<name>`` for a module that moved (the package's ``__getattr__``)."""
    new = new_name(f"dropkit.{name}")
    if new is None:
        raise AttributeError(f"module 'dropkit' has no attribute {name!r}")
    return _moved(f"dropkit.{name}", new)
