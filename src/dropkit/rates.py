"""Find a model's dropout sites and set their rates, per site or all at once.

Both go through the registry of dropout sites (:mod:`dropkit.sites`), so dropout
modules, foreign ``DropPath`` classes and the float rate attributes that transformers
keep on attention modules (``attention_dropout``, ``layerdrop``, ...) are found and
changed alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from dropkit.sites import Site, dropout_sites

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
        unknown = sorted(set(rate) - set(by_name))
        if unknown:
            raise ValueError(f"{fn}: {unknown} are not dropout sites of this model; "
                             f"expected names among {sorted(by_name)}")
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


def set_rate(model: nn.Module, rate: RateSpec) -> dict[str, float]:
    """Set the rates of dropout sites; return the new rates by site name.

    Args:
        model: the model whose dropout sites change.
        rate: one drop probability for every site (a ``GaussianNoise``'s ``std`` is
            left alone); a mapping from site name (:func:`find_dropout`) to rate (other
            sites keep theirs; an unknown name is an error); or a callable
            ``(name, module) -> float | None`` where ``None`` leaves that site alone.

    Every new rate is checked before any site changes: an invalid one raises
    ``ValueError`` naming the site, and the model is left as it was.
    """
    sites = dropout_sites(model)
    checked = plan_rates("set_rate", sites, rate)
    by_name = {s.name: s for s in sites}
    for name, value in checked.items():
        by_name[name].set(value)
    return checked
