"""Find a model's dropout sites and set their rates, per site or all at once.

Both go through the registry of dropout sites (:mod:`dropkit.tools.sites`), so dropout
modules, foreign ``DropPath`` classes and the float rate attributes that transformers
keep on attention modules (``attention_dropout``, ``layerdrop``, ...) are found and
changed alike.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

from dropkit.tools.sites import (
    Site,
    check_site_names,
    dropout_sites,
    last_discovered,
    on_first_call,
)

__all__ = ["find_dropout", "set_rate", "RateSpec"]

RateSpec = float | Mapping[str, float] | Callable[[str, nn.Module], "float | None"]


def find_dropout(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every dropout site of ``model``, in module order.

    Covers torch's and dropkit's dropout modules, stacked RNNs' ``dropout``, foreign
    ``DropPath``-like modules, and float rate attributes of a module's own code (for
    those, ``name`` is ``"<owner>.<attribute>"`` and ``module`` is the owner).
    :func:`dropkit.dropout_sites` gives the richer view (kind, rate, gating), and with
    an example input also the functional and fused dropout that only a forward pass
    shows. ``model`` itself is named ``""``.
    """
    return [(s.name, s.module) for s in dropout_sites(model)]


def plan_rates(fn: str, sites: list[Site], rate: RateSpec) -> dict[str, float]:
    """The new rate of each site ``rate`` names, every one checked; nothing is assigned.

    Raises naming the site (and the function ``fn``) on an unknown name, a site whose
    rate is written in the code, or an invalid value.
    """
    by_name = {s.name: s for s in sites}
    if isinstance(rate, Mapping):
        check_site_names(fn, rate, by_name)
        plan = {name: rate[name] for name in by_name if name in rate}
    elif callable(rate):
        plan = {}
        for s in sites:
            if s.settable:
                value = rate(s.name, s.module)
                if value is not None:
                    plan[s.name] = value
    else:  # one drop probability: every site whose rate is one (not GaussianNoise's std)
        plan = {s.name: rate for s in sites if s.settable and s.is_probability}
    return {name: by_name[name].check_rate(fn, value) for name, value in plan.items()}


def set_rate(model: nn.Module, rate: RateSpec, *, example_input: Any = None) -> dict[str, float]:
    """Set the rates of dropout sites; return the new rates by site name.

    Args:
        model: the model whose dropout sites change.
        rate: one drop probability for every site (a ``GaussianNoise``'s ``std`` is
            left alone); a mapping from site name (:func:`find_dropout`) to rate (other
            sites keep theirs; an unknown name is an error); or a callable
            ``(name, module) -> float | None`` where ``None`` leaves that site alone.
        example_input: optional; an input for a discovery pass
            (:func:`dropkit.dropout_sites`), which observes which rate attributes the
            forward reads. Without one, a pass over the model's next call checks the
            attributes no pass has seen yet, and warns naming any that was set but is
            not read (a layer that stores ``hidden_dropout`` and reads its config's).

    Every new rate is checked before any site changes: an invalid one raises
    ``ValueError`` naming the site, and the model is left as it was. A rate attribute a
    discovery pass saw the forward run past unread is not a site, so it is never
    reported as set. ``set_rate(model, 0)`` warns naming the sites that stay random:
    rates written in the code and raw noise (router jitter, a LayerDrop that reads its
    config), as the last discovery pass on the model found them.
    """
    sites = dropout_sites(model, example_input)
    if example_input is None:  # what no rate reaches, as the last pass saw it: named
        sites += [s for s in last_discovered(model) or [] if not s.settable]
    checked = plan_rates("set_rate", sites, rate)
    by_name = {s.name: s for s in sites}
    for name, value in checked.items():
        by_name[name].set(value)
    unseen = [by_name[n] for n in checked if by_name[n].kind == "attribute"
              and by_name[n].read is None]
    if unseen:
        check_at_next_call(model, "set_rate", unseen)
    if not isinstance(rate, (Mapping, Callable)) and rate == 0:  # type: ignore[arg-type]
        warn_still_random("set_rate", sites)
    return checked


def warn_still_random(fn: str, sites: list[Site]) -> None:
    """Warn, naming them, about the sites no rate reaches that still draw."""
    random = [s for s in sites if not s.settable and s.draws]
    if random:
        warnings.warn(
            f"{fn}: every settable rate is 0, but these sites still draw at training time: "
            + "; ".join(f"{s.describe()}, {_strength(s)} ({', '.join(s.calls)})"
                        for s in random), RuntimeWarning, stacklevel=3)


def _strength(site: Site) -> str:
    return f"rate {site.rate:g} written in the code" if site.kind == "functional" else "raw noise"


_PENDING: weakref.WeakKeyDictionary[nn.Module, RemovableHandle] = weakref.WeakKeyDictionary()


def check_at_next_call(model: nn.Module, fn: str, unseen: list[Site]) -> None:
    """At ``model``'s next call, a discovery pass on its arguments; warn naming each of
    ``unseen`` (rate attributes set before any pass looked) that it saw unread."""
    if model in _PENDING:
        return
    names = {(id(s.module), s.attr): s.name for s in unseen}

    def check(found: list[Site]) -> None:
        _PENDING.pop(model, None)
        kept = {(id(s.module), s.attr) for s in found if s.kind == "attribute"}
        unread = sorted(name for key, name in names.items() if key not in kept)
        if unread:
            warnings.warn(
                f"{fn}: {unread} were set, but a discovery pass at the model's next call saw "
                "its forward run past them unread (it reads the rate elsewhere, e.g. from "
                "its config): those rates are not applied, and these attributes are no "
                "longer listed as sites", RuntimeWarning, stacklevel=2)

    _PENDING[model] = on_first_call(model, check)
