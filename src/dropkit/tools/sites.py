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
- ``"functional"``: a dropout call with a rate written in the code (or read from a
  config), found only by a discovery pass; its rate cannot be set.
- ``"noise"``: a raw random draw (``uniform_``, ``rand``, ...) in the code of a module
  that owns no rate attribute (Mixtral's router jitter, Wav2Vec2's config-read
  LayerDrop), found only by a discovery pass; no rate to set, but listed, switched on by
  :func:`dropkit.mc_mode`, and named by ``set_rate(model, 0)`` as staying random.

Static discovery (``dropout_sites(model)``) reads modules and attributes (less those a
past pass saw the forward run past unread). It cannot see which module's flag gates a
fused call that reads a child's rate (timm's and GPT-2's
``scaled_dot_product_attention(dropout_p=self.attn_drop.p if self.training else 0.)``,
BERT's attention), rates written in the code, raw noise, nor whether a stored rate is
the one the forward uses. A discovery pass (``dropout_sites(model, example_input)``)
observes all of these, with two forwards under ``no_grad`` and a
:class:`torch.overrides.TorchFunctionMode` that records every dropout call and random
draw and the module whose code made it:

1. *probe*: every module but normalization layers in training mode, and every settable
   drop probability set to a distinct probe value. A call that carries a probe belongs
   to that site, whichever module's code made it (that module is its gate); a rate
   attribute (or a dropout module) the code ran past without any call carrying its
   probe is not read by the forward (Falcon's layers store ``hidden_dropout`` and read
   ``self.config.hidden_dropout``), and is dropped from the sites, here and in later
   static discovery; other calls are functional sites, other raw draws noise sites.
2. *confirm*: only the gates in training mode, every rate as it is, as
   :func:`dropkit.mc_mode` will run the model: which sites sample, the rate of each
   functional site, and whether a raw draw is one per example (dim 0 is the batch) or
   one for the whole batch.

LayerDrop sites are held at 0 in both passes, so that every layer runs. Still
invisible: a site a model builds only when its rate is above 0 (``DropPath(p) if p > 0
else nn.Identity()``), which no rate change can then reach, a call on a branch the
example input does not take, and draws outside torch (Wav2Vec2's SpecAugment draws
with NumPy: input augmentation, deliberately left out).
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
from torch.utils.hooks import RemovableHandle

from dropkit._checks import check_nonnegative, check_probability
from dropkit._torch_compat import DropoutNd, NormBase
from dropkit._trace import Call, CallArgs, no_grad_pass, split_inputs, untouched
from dropkit.errors import UsageError, UsageTypeError
from dropkit.nn._base import RateModule as _ValidatedRate

__all__ = ["Site", "dropout_sites", "discover", "discover_cached", "signature", "RATE_ATTRIBUTES",
           "SHARED_ATTRIBUTES", "gates_of", "on_first_call", "every_layer",
           "last_discovered"]

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
#: What discovery passes saw of each module's rate attributes: read by the forward, or
#: run past unread (Falcon's layers store ``hidden_dropout`` and read the config's).
_READ: weakref.WeakKeyDictionary[nn.Module, dict[str, bool]] = weakref.WeakKeyDictionary()
_FOREIGN_RATES = ("drop_prob", "p")

#: torch modules whose eval forward can take a fused fast path that skips their
#: children's dropout: their own flag gates every site inside them too.
FAST_PATH_MODULES: tuple[type[nn.Module], ...] = (nn.TransformerEncoderLayer,
                                                   nn.TransformerEncoder)


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
        kind: ``"module"``, ``"attribute"`` or ``"functional"`` (see :mod:`dropkit.tools.sites`).
        owner: the qualified name of ``module`` (``""``: the model itself).
        module: the dropout module, or the module that owns the rate or the call.
        attr: where the rate lives on ``module``; None for a rate written in the code.
        gates: ``(name, module)`` of each module whose own ``training`` flag must be
            True for the site to sample.
        calls: what a discovery pass saw it do (``"dropout at file.py:12"``).
        sampled: whether a discovery pass saw it sample with only its gates on, as
            :func:`dropkit.mc_mode` runs it (None: not observed, because no pass ran, or
            because it is LayerDrop, held at 0 in the pass).
        read: for a rate attribute, True where a discovery pass saw the forward use it
            (a call carried the probe rate set there), None where no pass has looked.
            An attribute a pass saw the forward run past without reading is not a site.
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
    read: bool | None = None
    shared_draw: bool = field(default=False, repr=False)

    @property
    def draws(self) -> bool:
        """True where it adds noise now (a rate above 0, or raw noise)."""
        return self.kind == "noise" or self.rate > 0

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
        """One draw serves every example of a batch (weights, vocabulary rows, layers).
        For raw noise, observed: a draw whose dim 0 was not the input's batch."""
        if self.kind == "noise":
            return self.shared_draw
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
        if self.kind == "noise":
            raise UsageError(
                f"{fn}: site {self.name!r} draws noise in the code of module {self.owner!r} "
                f"({type(self.module).__name__}) with no rate attribute dropkit can set"
            )
        if not self.settable:
            raise UsageError(
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
    if isinstance(m, DropoutNd):
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


def _static_sites(model: nn.Module, remembered: bool = True) -> list[Site]:
    """Modules and rate attributes, less (where ``remembered``) those the last discovery
    pass saw the forward run past unread."""
    sites = []
    fast = [(n, m) for n, m in model.named_modules() if isinstance(m, FAST_PATH_MODULES)]

    def gates(name: str, m: nn.Module) -> tuple[tuple[str, nn.Module], ...]:
        """The site's module, and each fast-path module it sits in, outermost first."""
        inside = tuple((n, f) for n, f in fast if f is not m and (
            n == "" or name.startswith(n + ".")))
        return (*inside, (name, m))

    for name, m in model.named_modules():
        seen = _READ.get(m, {}) if remembered else {}
        declared = getattr(type(m), "rate_attributes", None)  # a module with several rates
        if isinstance(declared, tuple):
            sites += [Site(f"{name}.{a}" if name else a, "attribute", name, m, a,
                           gates(name, m)) for a in declared]
            continue
        attr = _module_rate_attribute(m)
        if attr is not None and seen.get(attr) is not False:
            sites.append(Site(name, "module", name, m, attr, gates(name, m), read=seen.get(attr)))
        if attr is not None or isinstance(m, nn.RNNBase):  # a 1-layer RNN's never acts
            continue
        for attr in RATE_ATTRIBUTES:
            if _is_rate(vars(m).get(attr)) and seen.get(attr) is not False:
                label = f"{name}.{attr}" if name else attr
                sites.append(Site(label, "attribute", name, m, attr, gates(name, m),
                                  read=seen.get(attr)))
    return sites


def gates_of(sites: Iterable[Site]) -> list[nn.Module]:
    """Every module whose flag some site needs, each once, in the sites' order."""
    seen: dict[int, nn.Module] = {}
    for s in sites:
        for _, g in s.gates:
            seen.setdefault(id(g), g)
    return list(seen.values())


class _Evidence:
    """What the two discovery passes show of each static site, and the functional and
    noise sites they find. Pass 1 (the probe) tells which site each call belongs to and
    whose code made it; pass 2 (the confirmation) whether it samples with only the gates
    on, at its real rate."""

    def __init__(self, sites: list[Site], probes: dict[float, Site], batch: int | None) -> None:
        self.sites = sites
        self.probes = probes
        self.batch = batch
        self.shared: set[int] = set()  # noise sites with a draw not per example
        self.calls: dict[int, list[str]] = {id(s): [] for s in sites}
        self.sampled: dict[int, bool] = {id(s): False for s in sites}
        self.gates: dict[int, list[tuple[str, nn.Module]]] = {id(s): list(s.gates) for s in sites}
        self.read: set[int] = set()  # probed sites whose probe a call carried
        self.found: dict[tuple[int, str, str], Site] = {}  # functional and noise sites
        self.of_call: dict[tuple[int, str, str], Site] = {}  # a call's site, by pass 1
        self.by_module = {id(s.module): s for s in sites if s.kind == "module"}
        self.by_owner: dict[int, list[Site]] = {}
        for s in sites:
            if s.kind == "attribute":
                self.by_owner.setdefault(id(s.module), []).append(s)

    def mark(self, site: Site, call: Call, gate: tuple[str, nn.Module] | None,
             confirm: bool) -> None:
        label = call.function + (f" at {call.where}" if call.where else "")
        if label not in self.calls[id(site)]:
            self.calls[id(site)].append(label)
        if confirm:
            self.sampled[id(site)] |= call.samples
        elif gate is not None and all(g is not gate[1] for _, g in self.gates[id(site)]):
            self.gates[id(site)].append(gate)

    def _new(self, call: Call, kind: str) -> Site:
        """A site for a call no static site accounts for: a rate written in the code
        (``"functional"``) or a raw draw in a module without a rate (``"noise"``)."""
        taken = {s.name for s in [*self.sites, *self.found.values()]}
        name, n = f"{call.owner}:{call.function}", 1
        while name in taken:  # the same call twice in one module's code
            n += 1
            name = f"{call.owner}:{call.function}#{n}"
        site = Site(name, kind, call.owner, call.module, None, ((call.owner, call.module),),
                    fixed_rate=call.p)
        self.calls[id(site)], self.sampled[id(site)] = [], False
        self.gates[id(site)] = list(site.gates)
        return site

    def site_of(self, call: Call) -> Site | None:
        """Pass 1: the site a call belongs to, observed: the dropout module whose own
        code made it, the site whose probe rate it carries (wherever the code that read
        it runs), the rate attributes of the module that drew raw noise, else a new
        functional or noise site of the module whose code made it."""
        if id(call.module) in self.by_module:
            return self.by_module[id(call.module)]
        if call.p is not None and call.p in self.probes:
            self.read.add(id(self.probes[call.p]))
            return self.probes[call.p]
        if call.p is None and id(call.module) in self.by_owner:
            for s in self.by_owner[id(call.module)][1:]:  # LayerDrop's coin: all of them
                self.mark(s, call, None, False)
            return self.by_owner[id(call.module)][0]
        if call.p == 0.0:
            return None
        ident = _identity(call)
        if ident not in self.found:
            self.found[ident] = self._new(call, "noise" if call.p is None else "functional")
        return self.found[ident]

    def add(self, call: Call, confirm: bool) -> None:
        ident = _identity(call)
        if not confirm:
            site = self.site_of(call)
            if site is not None:
                self.of_call.setdefault(ident, site)
                self.mark(site, call, (call.owner, call.module), False)
                if site.kind == "noise" and not self._per_example(call):
                    self.shared.add(id(site))
            return
        site = self.of_call.get(ident)
        if site is None:  # only in pass 2: a data-dependent branch
            site = self.site_of(call)
            if site is None:
                return
        if site.kind == "functional" and call.p:
            self.found[ident] = site = self._rated(site, call.p)
        self.mark(site, call, None, True)

    def _ran_past(self, site: Site, ran: dict[int, bool], parents: dict[int, nn.Module]
                  ) -> bool:
        """The forward ran the code that holds ``site`` (a rate attribute's module, a
        dropout module's parent; the module itself did not run) and nothing of it was
        seen: no call carried its probe, no draw was its."""
        if id(site) in self.read or self.calls[id(site)]:
            return False
        if site.kind == "attribute":
            return id(site.module) in ran
        parent = parents.get(id(site.module))
        return (site.kind == "module" and parent is not None and id(parent) in ran
                and id(site.module) not in ran)

    def _per_example(self, call: Call) -> bool:
        """A raw draw whose dim 0 is the input's batch: one draw per example."""
        out = call.output
        return (isinstance(out, Tensor) and out.dim() > 0 and self.batch is not None
                and out.shape[0] == self.batch)

    def _rated(self, site: Site, p: float) -> Site:
        """``site`` with the rate its call passed at the model's real rates (pass 2)."""
        rated = replace(site, fixed_rate=p)
        self.calls[id(rated)] = self.calls.pop(id(site))
        self.sampled[id(rated)] = self.sampled.pop(id(site))
        self.gates[id(rated)] = self.gates.pop(id(site))
        self.of_call = {k: rated if v is site else v for k, v in self.of_call.items()}
        return rated

    def result(self, ran: dict[int, bool], held: list[Site], probed: list[Site],
               ran_probe: dict[int, bool], parents: dict[int, nn.Module]
               ) -> tuple[list[Site], list[Site]]:
        """The sites, and the probed rates the forward ran past without reading: a rate
        attribute whose module's code ran, or a dropout module whose parent's code ran
        while it did not (Falcon's ``attention_dropout`` beside ``dropout_p=0.0``), and
        no call carried the probe, no draw was theirs."""
        out, unread = [], []
        for s in [*self.sites, *self.found.values()]:
            if s in probed and self._ran_past(s, ran_probe, parents):
                unread.append(s)
                continue
            sampled: bool | None = None if s in held else self.sampled[id(s)]
            if s.kind == "module" and ran.get(id(s.module), False) and s.rate > 0:
                sampled = True  # its own forward ran in training mode (an RNN's C++ call)
            read = True if id(s) in self.read or (
                s.kind == "module" and id(s.module) in ran_probe) else s.read
            out.append(replace(s, gates=tuple(self.gates[id(s)]), read=read,
                               calls=tuple(self.calls[id(s)]), sampled=sampled,
                               shared_draw=id(s) in self.shared))
        return out, unread


def _identity(call: Call) -> tuple[int, str, str]:
    """One call site of a module's code: its module, the function, the line."""
    return (id(call.module), call.function, call.where)


def _skipping(sites: list[Site]) -> list[Site]:
    """The LayerDrop sites (transformers' ``layerdrop``, :class:`dropkit.nn.LayerDrop`): a
    pass that must see every layer holds them at 0, since a skipped layer hides the sites
    inside it (their coin is still drawn, and seen)."""
    return [s for s in sites if s.kind == "attribute" and (
        s.attr in SHARED_ATTRIBUTES or getattr(type(s.module), "skips_layers", False))]


@contextmanager
def every_layer(sites: list[Site]) -> Iterator[None]:
    """Inside, the LayerDrop sites among ``sites`` skip nothing (:func:`_skipping`)."""
    with _rates_held([(s, 0.0) for s in _skipping(sites)]):
        yield


@contextmanager
def _rates_held(rates: list[tuple[Site, float]]) -> Iterator[None]:
    """Inside, each site has the rate paired with it; on exit the rate it had."""
    saved = [(s, getattr(s.module, str(s.attr))) for s, _ in rates]
    try:
        for s, rate in rates:
            setattr(s.module, str(s.attr), rate)
        yield
    finally:
        for s, rate in saved:
            setattr(s.module, str(s.attr), rate)


def _probes(sites: list[Site], held: list[Site]) -> list[tuple[Site, float]]:
    """A distinct probe rate for every settable drop probability kept as a plain value:
    a call that carries one belongs to that site, whichever code read it. Odd binary
    fractions near 1/3, which no model writes in its code."""
    probed = [s for s in sites if s.settable and s.is_probability and s not in held and (
        isinstance(vars(s.module).get(str(s.attr)), numbers.Real)
        or isinstance(s.module, _ValidatedRate))]
    return [(s, 1 / 3 + (i + 1) * 2.0 ** -24) for i, s in enumerate(probed)]


def _stays_in_eval(m: nn.Module) -> bool:
    """Normalization layers keep their running statistics in the probe pass: they never
    draw, and a batch of one would fail in training mode."""
    return isinstance(m, NormBase)


def _record_reads(sites: list[Site], unread: list[Site]) -> None:
    """Remember, on each owner module, which rate attributes a pass saw read or not."""
    for s in [*sites, *unread]:
        if s.kind in ("attribute", "module") and (s.read is not None or s in unread):
            _READ.setdefault(s.module, {})[str(s.attr)] = s not in unread


def discover(model: nn.Module, example_input: Any) -> list[Site]:
    """:func:`dropout_sites` with an example input: two recorded passes under
    ``no_grad`` (see the module's docstring), modes, buffers and random streams left as
    they were."""
    static = _static_sites(model, remembered=False)  # looked at afresh: the code may differ
    held = _skipping(static)
    probes = _probes(static, held)
    with untouched(model), _rates_held([(s, 0.0) for s in held]):
        # Pass 1: every module but normalization in training mode, every probed rate at
        # its probe: which site each dropout call and raw draw belongs to, and whose code
        # made it (its gate).
        try:
            evidence, ran_probe = _probe(model, example_input, static, probes,
                                         [m for m in model.modules() if not _stays_in_eval(m)])
        except Exception as error:  # noqa: BLE001 - a training-mode forward that fails
            # where the model's own modes work: probe with the sites' modules and their
            # parents alone in training mode, and say what goes unseen
            dropouts = {id(s.module) for s in static if s.kind == "module"}
            holders = [m for m in model.modules()
                       if any(id(c) in dropouts for c in m.children())]
            evidence, ran_probe = _probe(model, example_input, static, probes,
                                         [*gates_of(static), *holders])
            warnings.warn(  # only once the narrower pass worked: the mode was the cause
                f"dropout_sites: the discovery pass with every module in training mode "
                f"failed ({type(error).__name__}: {str(error).strip()[:200]}); it ran again "
                "with only the dropout sites' modules and their parents in training mode, so "
                "raw noise in other modules' code is not observed", RuntimeWarning,
                stacklevel=3)
        # Pass 2: only the gates on, the real rates: what mc_mode will sample.
        ran: dict[int, bool] = {}
        gates = {id(g): g for gs in evidence.gates.values() for _, g in gs}  # every site's
        _pass(model, example_input, gates.values(), lambda c: evidence.add(c, True), ran)
    parents = {id(c): m for m in model.modules() for c in m.children()}
    found, unread = evidence.result(ran, held, [s for s, _ in probes], ran_probe, parents)
    _record_reads(found, unread)
    return found


def _probe(model: nn.Module, x: Any, static: list[Site], probes: list[tuple[Site, float]],
           on: list[nn.Module]) -> tuple[_Evidence, dict[int, bool]]:
    """Pass 1 with ``on`` in training mode and every probe rate set: the evidence, and
    the modules whose forward ran."""
    evidence = _Evidence(static, {value: s for s, value in probes}, _batch_size(x))
    ran: dict[int, bool] = {}
    with _rates_held(probes):
        _pass(model, x, on, lambda c: evidence.add(c, False), ran)
    return evidence, ran


def _batch_size(x: Any) -> int | None:
    """Dim 0 of the input's first tensor with one; None where there is none."""
    args, kwargs = split_inputs("dropout_sites", x)
    return next((t.shape[0] for t in [*args, *kwargs.values()]
                 if isinstance(t, Tensor) and t.dim() > 0), None)


def _pass(model: nn.Module, x: Any, on: Iterable[nn.Module],
          on_call: Callable[[Call], None], ran: dict[int, bool]) -> None:
    with warnings.catch_warnings():
        # a torch.compile'd model warns that global module hooks fire once more
        warnings.filterwarnings("ignore", _COMPILED_HOOKS_WARNING, UserWarning)
        no_grad_pass(model, x, on, on_call, ran)


_COMPILED_HOOKS_WARNING = r"Using `torch\.compile\(module\)` when there are global hooks"
_PLAIN = (bool, int, float, str, type(None))
# Per model: (signature, its sites with every module held weakly). A strong reference
# in a value would keep the model alive whenever it is a site or a gate itself (a bare
# nn.Dropout, a model calling F.dropout in its own forward).
_Held = tuple[Site, "weakref.ref[nn.Module]", tuple[tuple[str, "weakref.ref[nn.Module]"], ...]]
_DISCOVERED: weakref.WeakKeyDictionary[nn.Module, tuple[object, list[_Held]]] = (
    weakref.WeakKeyDictionary())


def _remember(model: nn.Module, key: object, sites: list[Site]) -> None:
    _DISCOVERED[model] = (key, [(replace(s, module=_DETACHED, gates=()), weakref.ref(s.module),
                                 tuple((n, weakref.ref(g)) for n, g in s.gates))
                                for s in sites])


def _recalled(model: nn.Module, key: object = ...) -> list[Site] | None:
    """The sites remembered for ``model`` (under ``key``, unless ``...``), or None."""
    hit = _DISCOVERED.get(model)
    if hit is None or (key is not ... and hit[0] != key):
        return None
    sites = []
    for shell, module, gates in hit[1]:
        held = module()
        if held is None:
            return None
        sites.append(replace(shell, module=held, gates=tuple(
            (n, g) for n, g in ((n, r()) for n, r in gates) if g is not None)))
    return sites


_DETACHED = nn.Module()  # a remembered site's module while the cache holds it weakly


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


def signature(model: nn.Module, example_input: Any) -> object | None:
    """What a discovery pass's outcome (and a timing of the strategies) depends on in
    ``model`` and an input (:func:`_model_key`, :func:`_input_key`); None where the
    input is not a plain structure of tensors and values."""
    input_key = _input_key(example_input)
    return None if input_key is None else (_model_key(model), input_key)


def discover_cached(model: nn.Module, example_input: Any, key: object = ...) -> list[Site]:
    """:func:`discover`, reusing the last answer for ``model`` while its
    :func:`signature` is unchanged: Monte Carlo prediction over a pool's batches runs one
    discovery, not one per batch. Anything else (another shape, a rate set, a module
    added or switched) runs the passes again. ``key``: the signature, if the caller has
    it already."""
    if key is ...:
        key = signature(model, example_input)
    if key is None:
        return discover(model, example_input)
    hit = _recalled(model, key)
    if hit is not None:
        return hit
    found = discover(model, example_input)
    _remember(model, key, found)
    return found


def last_discovered(model: nn.Module) -> list[Site] | None:
    """The sites the last discovery pass over ``model`` (:func:`discover_cached`) found,
    whatever its input; None where none ran."""
    return _recalled(model)


def check_site_names(fn: str, names: Iterable[str], known: Iterable[str],
                     argument: str | None = None) -> None:
    """Raise naming every name in ``names`` (the argument ``argument``, if named) that is
    not among the sites ``known``."""
    known = sorted(known)
    unknown = sorted(set(names) - set(known))
    if unknown:
        which = f"`{argument}` names {unknown}, which" if argument else f"{unknown}"
        raise UsageError(f"{fn}: {which} are not dropout sites of this model; "
                         f"expected names among {known}")


def dropout_sites(model: nn.Module, example_input: Any = None) -> list[Site]:
    """Every dropout site of ``model``, in module order (see :mod:`dropkit.tools.sites`).

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
        raise UsageTypeError(f"dropout_sites: expected `model` to be a torch.nn.Module, "
                        f"got {type(model).__name__}")
    if example_input is None:
        return _static_sites(model)
    key = signature(model, example_input)
    found = discover(model, example_input)
    if key is not None:
        _remember(model, key, found)
    return found


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
