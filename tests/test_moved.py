"""The import paths of 0.1 still work, with a DeprecationWarning naming the new path,
and give the very module of the new path (one copy: patching either patches both)."""

from __future__ import annotations

import importlib
import sys

import pytest

import dropkit
from dropkit import _moved


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_an_old_path_warns_and_gives_the_new_module(old: str, monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=rf"^{old} moved to {_moved.MOVED[old]}; "):
        module = importlib.import_module(old)
    assert module is importlib.import_module(_moved.MOVED[old])


def test_a_submodule_below_an_old_path_is_the_same_object(monkeypatch) -> None:
    for name in ("dropkit.experiments", "dropkit.experiments.engine"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.warns(DeprecationWarning):
        from dropkit.experiments.engine import TrainConfig
    from dropkit.app.experiments.engine import TrainConfig as Now

    assert TrainConfig is Now


def test_the_package_attribute_of_an_old_path_warns(monkeypatch) -> None:
    monkeypatch.delattr(dropkit, "sites", raising=False)
    with pytest.warns(DeprecationWarning, match="dropkit.sites moved to dropkit.tools.sites"):
        assert dropkit.sites is importlib.import_module("dropkit.tools.sites")
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        dropkit.nothing  # noqa: B018


@pytest.mark.parametrize("public, home", [("acquisition", "dropkit.inference.acquisition"),
                                          ("uncertainty", "dropkit.inference.uncertainty"),
                                          ("schedules", "dropkit.tools.schedules")])
def test_the_public_paths_are_the_layers_modules_without_a_warning(public, home) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = importlib.import_module(f"dropkit.{public}")
    assert module is importlib.import_module(home) is getattr(dropkit, public)


def test_an_old_path_that_shares_a_public_name_keeps_the_name(monkeypatch) -> None:
    """``dropkit.patch`` is the function; importing the old module path ``dropkit.patch``
    gives the module and leaves the function where it was."""
    function = dropkit.patch
    monkeypatch.delitem(sys.modules, "dropkit.patch", raising=False)
    with pytest.warns(DeprecationWarning):
        from dropkit.patch import is_patched
    assert dropkit.patch is function and callable(dropkit.patch)
    assert is_patched is importlib.import_module("dropkit.tools.patch").is_patched
