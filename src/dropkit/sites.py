"""The registry of dropout sites: the one answer to "what samples in this model, at
what rate, and which ``training`` flag switches it".

Every tool asks here: :func:`dropkit.find_dropout`, :func:`dropkit.set_rate`,
:class:`dropkit.DropoutScheduler`, :func:`dropkit.mc_mode`, :func:`dropkit.mc_predict`,
:func:`dropkit.patch`, :func:`dropkit.diagnose` and :func:`dropkit.inference_guard`.

A *site* is anything that drops or injects noise at train time:

- ``"module"``: a dropout module. torch's (``Dropout*``, ``AlphaDropout``, stacked RNNs'
  ``dropout``), dropkit's (each class declares its ``rate_attribute`` and whether it
  shares one draw over the batch or takes time first; a module with several rates, as
  ``VariationalLSTM``, lists them in ``rate_attributes``: one attribute site each), and
  foreign ones recognised by behaviour: a parameter-free leaf module, not from torch,
  with a numeric ``drop_prob`` or ``p`` in [0, 1] (timm's and transformers'
  ``DropPath``). Its own
  ``training`` flag switches it.
- ``"attribute"``: a numeric rate attribute of a module whose own code drops with it,
  gated on its own flag: transformers' ``attention_dropout``, ``activation_dropout``,
  ``layerdrop``, torch's ``MultiheadAttention.dropout`` (the names are
  :data:`RATE_ATTRIBUTES`).
- ``"functional"``: a dropout call with a rate written in the code, found only by a
  discovery pass; its rate cannot be set.

Static discovery (``dropout_sites(model)``) reads modules and attributes. It cannot
see which module's flag gates a fused call that reads a child's rate (timm's and
GPT-2's ``scaled_dot_product_attention(dropout_p=self.attn_drop.p if self.training
else 0.)``, BERT's attention), nor rates written in the code. A discovery pass
(``dropout_sites(model, example_input)``) sees both: one forward under ``no_grad``
with a :class:`torch.overrides.TorchFunctionMode` that records every dropout call and
the module whose code made it. Still invisible to both: a site a model builds only
when its rate is above 0 (``DropPath(p) if p > 0 else nn.Identity()``), which no
rate change can then reach.
"""

from __future__ import annotations

import numbers
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd
from torch.utils.hooks import RemovableHandle

from dropkit._checks import check_nonnegative, check_probability
from dropkit._trace import Call, CallArgs, no_grad_pass, untouched

__all__ = ["Site", "dropout_sites", "discover", "discover_cached", "RATE_ATTRIBUTES",
           "SHARED_ATTRIBUTES", "gates_of", "on_first_call", "every_layer"]

#: Instance attributes that hold a drop rate used by the module's own code
#: (transformers, fairseq, torch's MultiheadAttention).
RATE_ATTRIBUTES = (
    "dropout", "dropout_p", "dropout_prob", "dropout_rate", "attention_dropout",
    "attn_dropout", "attention_probs_dropout_prob", "attn_pdrop", "resid_pdrop",
    "embd_pdrop", "hidden_dropout", "hidden_dropout_prob", "activation_dropout",
    "layerdrop",
)
#: Rate attributes whose one draw serves the whole batch (LayerDrop skips a layer for
#: every example at once).
SHARED_ATTRIBUTES = frozenset({"layerdrop"})
_FOREIGN_RATES = ("drop_prob", "p")


def _is_rate(value: object) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and 0.0 <= float(value) <= 1.0)


@dataclass(frozen=True, eq=False)
class Site:
    """One place in a model where dropout (or training noise) happens.

    Attributes:
        name: its name, unique in the model: the module's qualified name for a module
            site, ``"<owner>.<attribute>"`` for an attribute site, ``"<owner>:<call>"``
            for a functional one.
        kind: ``"module"``, ``"attribute"`` or ``"functional"`` (see :mod:`dropkit.sites`).
        owner: the qualified name of ``module`` (``""``: the model itself).
        module: the dropout module, or the module that owns the rate or the call.
        attr: where the rate lives on ``module``; None for a rate written in the code.
        gates: ``(name, module)`` of each module whose own ``training`` flag must be
            True for the site to sample.
        calls: what a discovery pass saw it do (``"dropout at file.py:12"``).
        sampled: whether a discovery pass saw it sample (None: not observed, because no
            pass ran, or because it is LayerDrop, held at 0 in the pass).
    """

    name: str
    kind: str
    owner: str
    module: nn.Module
    attr: str | None
    gates: tuple[tuple[str, nn.Module], ...]
    calls: tuple[str, ...] = ()
    sampled: bool | None = None
    fixed_rate: float | None = field(default=None, repr=False)

    @property
    def rate(self) -> float:
        """The rate now in force, a drop probability (or GaussianNoise's ``std``)."""
        if self.attr is None:
            return float(self.fixed_rate or 0.0)
        return float(getattr(self.module, self.attr))

    @property
    def is_probability(self) -> bool:
        """False for noise whose strength is not a drop probability (GaussianNoise)."""
        return self.kind != "module" or getattr(type(self.module), "rate_is_probability", True)

    @property
    def settable(self) -> bool:
        return self.attr is not None

    @property
    def shares_noise_across_batch(self) -> bool:
        """One draw serves every example of a batch (weights, vocabulary rows, layers)."""
        shared = bool(getattr(self.module, "shares_noise_across_batch", False))
        if self.kind == "attribute":
            return self.attr in SHARED_ATTRIBUTES or shared
        return shared

    @property
    def time_first(self) -> bool:
        """Its input's dim 0 is time, not the batch."""
        if isinstance(self.module, nn.RNNBase):
            return not self.module.batch_first
        return self.kind == "module" and bool(getattr(self.module, "time_first", False))

    def describe(self) -> str:
        where = f"{self.kind} site {self.name!r} ({type(self.module).__name__}"
        return where + (f".{self.attr})" if self.kind == "attribute" else ")")

    def check_rate(self, fn: str, value: object) -> float:
        """``value`` validated as this site's rate; raises naming the site otherwise."""
        if not self.settable:
            raise ValueError(
                f"{fn}: site {self.name!r} drops at a rate written in the code of module "
                f"{self.owner!r} ({type(self.module).__name__}), which cannot be set"
            )
        label = f"{fn}: site {self.name!r}"
        if not self.is_probability:
            return check_nonnegative(label, value, self.attr or "rate")
        allow_one = getattr(self.module, "_allow_one", True)
        return check_probability(label, value, allow_one=allow_one)

    def set(self, value: float) -> None:
        """Assign an already checked rate (:meth:`check_rate`)."""
        setattr(self.module, str(self.attr), value)


def _module_rate_attribute(m: nn.Module) -> str | None:
    """Where a dropout module keeps its rate; None if ``m`` is not one."""
    if isinstance(m, nn.RNNBase):
        return "dropout" if m.num_layers > 1 else None  # torch ignores it on one layer
    if isinstance(m, _DropoutNd):
        return "p"
    declared = getattr(type(m), "rate_attribute", None)
    if isinstance(declared, str):
        return declared
    foreign = not type(m).__module__.startswith("torch.")
    if foreign and not any(True for _ in m.children()) and not any(
            True for _ in m.parameters()):
        for attr in _FOREIGN_RATES:
            if _is_rate(vars(m).get(attr)):
                return attr
    return None


def _static_sites(model: nn.Module) -> list[Site]:
    sites = []
    for name, m in model.named_modules():
        declared = getattr(type(m), "rate_attributes", None)  # a module with several rates
        if isinstance(declared, tuple):
            sites += [Site(f"{name}.{a}" if name else a, "attribute", name, m, a, ((name, m),))
                      for a in declared]
            continue
        attr = _module_rate_attribute(m)
        if attr is not None:
            sites.append(Site(name, "module", name, m, attr, ((name, m),)))
        if attr is not None or isinstance(m, nn.RNNBase):  # a 1-layer RNN's never acts
            continue
        for attr in RATE_ATTRIBUTES:
            if _is_rate(vars(m).get(attr)):
                label = f"{name}.{attr}" if name else attr
                sites.append(Site(label, "attribute", name, m, attr, ((name, m),)))
    return sites


def gates_of(sites: Iterable[Site]) -> list[nn.Module]:
    """Every module whose flag some site needs, each once, in the sites' order."""
    seen: dict[int, nn.Module] = {}
    for s in sites:
        for _, g in s.gates:
            seen.setdefault(id(g), g)
    return list(seen.values())


class _Evidence:
    """What a discovery pass adds to each static site, and the functional sites it finds."""

    def __init__(self, model: nn.Module, sites: list[Site]) -> None:
        self.sites = sites
        self.calls: dict[int, list[str]] = {id(s): [] for s in sites}
        self.sampled: dict[int, bool] = {id(s): False for s in sites}
        self.gates: dict[int, list[tuple[str, nn.Module]]] = {id(s): list(s.gates) for s in sites}
        self.functional: dict[tuple[str, str, str], Site] = {}
        self.by_module = {id(s.module): s for s in sites if s.kind == "module"}
        self.by_owner: dict[int, list[Site]] = {}
        for s in sites:
            if s.kind == "attribute":
                self.by_owner.setdefault(id(s.module), []).append(s)
        self.children: dict[int, list[Site]] = {}
        for m in model.modules():
            self.children[id(m)] = [self.by_module[id(c)] for c in m.children()
                                    if id(c) in self.by_module]

    def mark(self, site: Site, call: Call, gate: tuple[str, nn.Module] | None) -> None:
        label = call.function + (f" at {call.where}" if call.where else "")
        if label not in self.calls[id(site)]:
            self.calls[id(site)].append(label)
        self.sampled[id(site)] |= call.samples
        if gate is not None and all(g is not gate[1] for _, g in self.gates[id(site)]):
            self.gates[id(site)].append(gate)

    def add(self, call: Call, ran: dict[int, bool]) -> None:
        key = id(call.module)
        if key in self.by_module:  # a dropout module's own call or draw
            self.mark(self.by_module[key], call, None)
            return
        owned = self.by_owner.get(key, [])
        if call.p is None:  # a raw draw (LayerDrop's coin) in a module that owns a rate
            for s in owned:
                self.mark(s, call, None)
            return
        # A dropout call in some module's own code: its rate is one of the module's own
        # rate attributes, or that of a child dropout module whose forward never ran
        # (the fused path reads its ``p``), or a rate written in the code.
        unused = [s for s in self.children.get(key, []) if id(s.module) not in ran]
        matched = [s for s in owned + unused if s.rate == call.p]
        for s in matched:
            self.mark(s, call, (call.owner, call.module))
        if matched or call.p == 0.0:
            return
        ident = (call.owner, call.function, call.where)
        if ident not in self.functional:
            taken = {s.name for s in [*self.sites, *self.functional.values()]}
            name, n = f"{call.owner}:{call.function}", 1
            while name in taken:  # the same call twice in one module's code
                n += 1
                name = f"{call.owner}:{call.function}#{n}"
            site = Site(name, "functional", call.owner, call.module, None,
                        ((call.owner, call.module),), fixed_rate=call.p)
            self.functional[ident] = site
            self.calls[id(site)], self.sampled[id(site)] = [], False
            self.gates[id(site)] = list(site.gates)
        self.mark(self.functional[ident], call, None)

    def result(self, ran: dict[int, bool], held: list[Site]) -> list[Site]:
        out = []
        for s in [*self.sites, *self.functional.values()]:
            sampled: bool | None = None if s in held else self.sampled[id(s)]
            if s.kind == "module" and ran.get(id(s.module), False) and s.rate > 0:
                sampled = True  # its own forward ran in training mode (an RNN's C++ call)
            out.append(replace(s, gates=tuple(self.gates[id(s)]),
                               calls=tuple(self.calls[id(s)]), sampled=sampled))
        return out


def _skipping(sites: list[Site]) -> list[tuple[Site, float]]:
    """The LayerDrop sites (transformers' ``layerdrop``, :class:`dropkit.nn.LayerDrop`),
    with their rates: a pass that must see every layer holds them at 0, since a skipped
    layer hides the sites inside it (their coin is still drawn, and seen)."""
    return [(s, s.rate) for s in sites if s.kind == "attribute" and (
        s.attr in SHARED_ATTRIBUTES or getattr(type(s.module), "skips_layers", False))]


@contextmanager
def every_layer(sites: list[Site]) -> Iterator[None]:
    """Inside, the LayerDrop sites among ``sites`` skip nothing (:func:`_skipping`)."""
    with _rates_held(_skipping(sites), 0.0):
        yield


@contextmanager
def _rates_held(sites: list[tuple[Site, float]], value: float) -> Iterator[None]:
    """Inside, each of ``sites`` has rate ``value``; on exit the rate it had."""
    try:
        for s, _ in sites:
            s.set(value)
        yield
    finally:
        for s, rate in sites:
            s.set(rate)


def discover(model: nn.Module, example_input: Any) -> tuple[list[Site], float]:
    """:func:`dropout_sites` with an example input, and the share of the discovery pass's
    floating-point work (``torch.utils.flop_counter``: matmuls, convolutions, attention)
    done before its first draw: the part of the network that vectorized Monte Carlo
    sampling runs once. Counted, not timed, so the same model and input always give the
    same share (0 where nothing drew or nothing was counted)."""
    # imported here: it loads Triton, and `import dropkit` stays light
    from torch.utils.flop_counter import FlopCounterMode

    sites = _static_sites(model)
    # Switched on: every static gate, and every module that holds a dropout child (its
    # own code may read the child's rate in a fused call). A module's flag counts as a
    # gate only where a dropout call from its own code was seen.
    dropouts = {id(s.module) for s in sites if s.kind == "module"}
    parents = [m for m in model.modules() if any(id(c) in dropouts for c in m.children())]
    on = {id(m): m for m in [*gates_of(sites), *parents]}
    skips = _skipping(sites)
    with untouched(model), _rates_held(skips, 0.0):
        for _ in range(2):
            calls: list[Call] = []
            ran: dict[int, bool] = {}
            with FlopCounterMode(display=False) as flops, warnings.catch_warnings():
                # the counter's module hooks are global: a torch.compile'd model warns
                # that they fire once more, for its wrapper (the total is unchanged)
                warnings.filterwarnings("ignore", _COMPILED_HOOKS_WARNING, UserWarning)
                start, end = no_grad_pass(model, example_input, on.values(), calls.append,
                                          ran, lambda: float(flops.get_total_flops()))
            # A call that did not drop, from a module left in eval: switch that module
            # on too and look again (its code may gate the call on its own flag).
            unknown = {id(c.module): c.module for c in calls
                       if c.p is not None and not c.samples and id(c.module) not in on}
            if not unknown:
                break
            on.update(unknown)
    evidence = _Evidence(model, sites)
    for c in calls:
        evidence.add(c, ran)
    first = next((c.at for c in calls if c.samples), start)
    prefix = (first - start) / (end - start) if end > start else 0.0
    return evidence.result(ran, [s for s, _ in skips]), prefix


_COMPILED_HOOKS_WARNING = r"Using `torch\.compile\(module\)` when there are global hooks"
_PLAIN = (bool, int, float, str, type(None))
_DISCOVERED: weakref.WeakKeyDictionary[nn.Module, tuple[object, tuple[list[Site], float]]] = (
    weakref.WeakKeyDictionary())


def _input_key(x: Any) -> object:
    """What a discovery pass's outcome can depend on in an input: the structure, and each
    tensor's shape, dtype and device (not its values). None: not a plain structure."""
    if isinstance(x, Tensor):
        return ("tensor", tuple(x.shape), x.dtype, x.device)
    if isinstance(x, _PLAIN):
        return (type(x), x)
    if isinstance(x, (tuple, list)):
        keys = [_input_key(v) for v in x]
        return None if None in keys else (type(x), tuple(keys))
    if isinstance(x, Mapping):
        pairs = [(k, _input_key(v)) for k, v in x.items()]
        ok = all(isinstance(k, _PLAIN) and v is not None for k, v in pairs)
        return (type(x), tuple(pairs)) if ok else None
    return None


def _model_key(model: nn.Module) -> object:
    """Everything of ``model`` a discovery pass's outcome can depend on, short of its
    code's data-dependent branches: every module, its class, its own plain attributes
    (``training``, rates, flags, switches), a forward bound on the instance, its hooks."""
    return tuple(
        (name, type(m), tuple((k, v) for k, v in vars(m).items() if _is_plain(v)),
         id(vars(m).get("forward")), tuple(m._forward_pre_hooks), tuple(m._forward_hooks))
        for name, m in model.named_modules())


_PLAIN_TYPES = frozenset(_PLAIN)
_CONTAINERS = frozenset({dict, OrderedDict, set})  # most of a module's own attributes


def _is_plain(value: object) -> bool:
    """``isinstance(value, _PLAIN)``, a third faster on a module's attributes (the key
    is taken at every ``mc_predict`` call)."""
    kind = type(value)
    return kind in _PLAIN_TYPES or (kind not in _CONTAINERS and isinstance(value, _PLAIN))


def discover_cached(model: nn.Module, example_input: Any) -> tuple[list[Site], float]:
    """:func:`discover`, reusing the last answer for ``model`` while nothing it depends on
    has changed (:func:`_model_key`, :func:`_input_key`): Monte Carlo prediction over a
    pool's batches runs one discovery pass, not one per batch. Anything else (another
    shape, a rate set, a module added or switched) runs the pass again."""
    input_key = _input_key(example_input)
    if input_key is None:
        return discover(model, example_input)
    key = (_model_key(model), input_key)
    hit = _DISCOVERED.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    found = discover(model, example_input)
    _DISCOVERED[model] = (key, found)
    return found


def dropout_sites(model: nn.Module, example_input: Any = None) -> list[Site]:
    """Every dropout site of ``model``, in module order (see :mod:`dropkit.sites`).

    Args:
        model: the model to inspect.
        example_input: optional; one valid input (a tensor, a tuple of positional
            arguments, or a mapping of keyword arguments such as an HF
            ``BatchEncoding``). With it, one or two discovery passes run under
            ``no_grad``: they find the module whose flag gates each functional or
            fused dropout, and rates written in the code. Modes, buffers and every
            random stream are left exactly as they were.

    Returns:
        The sites; :func:`dropkit.find_dropout` gives the same as ``(name, module)``.

    Example::

        >>> model = torch.nn.MultiheadAttention(8, 2, dropout=0.1)
        >>> [(s.name, s.kind, s.rate) for s in dropkit.dropout_sites(model)]
        [('dropout', 'attribute', 0.1)]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"dropout_sites: expected `model` to be a torch.nn.Module, "
                        f"got {type(model).__name__}")
    if example_input is None:
        return _static_sites(model)
    return discover(model, example_input)[0]


def on_first_call(model: nn.Module, then: Callable[[list[Site]], None]) -> RemovableHandle:
    """At ``model``'s next call, run a discovery pass on that call's own arguments and
    give the sites to ``then``, before the call proceeds; once. For tools used without an
    example input (:func:`dropkit.mc_mode`, :func:`dropkit.patch`): only a pass shows
    whose flag gates a fused call."""

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        handle.remove()
        then(dropout_sites(model, CallArgs(args, kwargs)))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    return handle
