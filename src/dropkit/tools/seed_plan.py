"""Dropout randomness as a pure function of (seed, site, step, rank): no generator state
to save.

A :class:`SeedPlan` gives every dropout site of a model its own generator and, at each
training step, seeds it from a hash of (base seed, site name, step, rank). One training
step's masks then follow from ``(seed, step)`` alone: resuming after a kill, a
data-parallel rerun and an activation-checkpoint recompute all draw the same masks,
on the torch backend and the seeded one, and a checkpoint stores two integers instead
of generator states.

Tensor parallelism (Megatron-LM's RNG tracker, in these terms): a site whose activations
are *sharded* across the ranks of a tensor-parallel group (attention probabilities of
the heads a rank holds; Megatron forks its ``model-parallel-rng`` there) needs a mask
of its own on every rank, so the rank enters its seed: the default. A site whose
activations are *replicated* across the group (the hidden dropout after a row-parallel
all-reduce; Megatron's default generator) must drop the same units on every rank of
the group, or the replicas drift apart: name it in ``shared``. Its seed then takes the
group's first global rank instead of the rank, so the ranks of one group share its
masks and the groups (data-parallel replicas) still differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dropkit._checks import check_int
from dropkit._dist import rank
from dropkit._trace import model_device
from dropkit.errors import UsageError, UsageTypeError
from dropkit.tools.sites import Site, check_site_names, dropout_sites, on_first_call

__all__ = ["SeedPlan"]

SEED_LIMIT = 2**63  # torch.Generator.manual_seed takes a 64-bit seed; kept non-negative


def site_seed(seed: int, name: str, step: int, rank: int) -> int:
    """The seed of site ``name`` at ``step`` on ``rank``: a hash, the same in every process
    and every Python (never the salted built-in ``hash``)."""
    key = f"dropkit-seed-plan/{seed}/{name}/{step}/{rank}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") % SEED_LIMIT


def _group_rank(group: Any, shared: bool) -> int:
    """What enters the seed: this process's rank, or for a shared site the first global
    rank of its tensor-parallel group (0 without torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0
    if not shared:
        return rank()
    return min(dist.get_process_group_ranks(group if group is not None else dist.group.WORLD))


def _seedable(site: Site) -> bool:
    return site.kind == "module" and hasattr(site.module, "generator")


def _drawn_elsewhere(sites: list[Site]) -> list[str]:
    """The module sites a discovery pass saw read by another module's code (a fused
    attention call given the child's ``p``): their draws come from torch's global
    generator in that code, never from the generator a plan sets on the module."""
    out = []
    for s in sites:
        callers = [repr(n) for n, g in s.gates if g is not s.module]
        if s.kind == "module" and callers:
            out.append(f"{s.name!r} ({type(s.module).__name__}: its rate is passed to "
                       f"{', '.join(s.calls) or 'a call'} in the code of {', '.join(callers)})")
    return out


def _refuse_drawn_elsewhere(fn: str, sites: list[Site], error: type[Exception]) -> None:
    foreign = _drawn_elsewhere(sites)
    if foreign:
        raise error(f"{fn}: cannot seed {'; '.join(foreign)}: those draws come from torch's "
                    "global generator, not from the generator a plan sets on the module")


def _check_at_first_call(model: nn.Module) -> None:
    """:func:`_refuse_drawn_elsewhere` on the arguments of ``model``'s next call, before
    it runs; a refused call leaves the check in place for the call after it."""

    def check(found: list[Site]) -> None:
        try:
            _refuse_drawn_elsewhere("SeedPlan", found, RuntimeError)
        except RuntimeError:
            on_first_call(model, check)
            raise

    on_first_call(model, check)


class SeedPlan:
    """Seed every dropout site of ``model`` from (``seed``, site name, step, rank).

    On construction each site gets a generator of its own, seeded for step 0; after
    ``k`` calls of :meth:`step`, for step ``k``. Call ``step()`` once per training step
    (after the optimizer step; with gradient accumulation, once per micro-batch or once
    per step: draws within a step follow each other deterministically).
    ``state_dict()`` holds the seed and the step, nothing else.

    Args:
        model: a model whose dropout sites are dropkit modules (they take a
            ``generator``). A site that draws from torch's global generator inside code
            dropkit does not own (``torch.nn.Dropout``, attention dropout, functional
            calls) cannot be planned; the constructor names it.
        seed: the base seed, an int in [0, 2**63).
        shared: names of sites (as :func:`dropkit.dropout_sites` names them) whose masks
            the ranks of a tensor-parallel group share; modules built with
            ``seed_per_rank=False`` are shared too. See the module's docstring.
        group: the tensor-parallel process group of the shared sites. Default: all ranks.
        example_input: optional; an input for a discovery pass, which observes that
            every site's draws come from the generator the plan sets: a dropout module
            whose rate another module's code passes to its own call (BERT-style fused
            attention given ``self.dropout.p``) is refused by name. Without one the
            same pass runs at the model's first call and raises there, before
            anything draws.
        device: where the generators of the torch backend live (the input's device).
            Default: the device of the model's first parameter, else the CPU. Sites on
            the seeded backend always draw their seeds from a CPU generator (no wait on
            the GPU).

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), dropkit.nn.Dropout(0.5))
        >>> plan = dropkit.SeedPlan(model, seed=7)
        >>> x = torch.ones(2, 4)
        >>> a = model(x)  # step 0
        >>> plan.step()
        1
        >>> plan.set_step(0)  # as a run resumed at step 0: the masks follow from (7, 0)
        >>> torch.equal(model(x), a)
        True
    """

    def __init__(self, model: nn.Module, seed: int, *, shared: Iterable[str] = (),
                 group: Any = None, device: torch.device | str | None = None,
                 example_input: Any = None) -> None:
        seed = check_int("SeedPlan", seed, "seed", 0, SEED_LIMIT)
        sites = dropout_sites(model, example_input)
        _refuse_drawn_elsewhere("SeedPlan", sites, ValueError)
        if not sites:
            raise UsageError("SeedPlan: the model has no dropout site to seed")
        foreign = [f"{s.name!r} ({type(s.module).__name__}, {s.kind})"
                   for s in sites if not _seedable(s)]
        if foreign:
            raise UsageError(
                f"SeedPlan: cannot seed {', '.join(foreign)}: these sites draw from torch's "
                "global generator inside code that takes no generator, so no plan can give "
                "them a stream; use dropkit's modules there (dropkit.nn.Dropout, ...)")
        shared = list(shared) if not isinstance(shared, str) else [shared]
        names = [s.name for s in sites]
        check_site_names("SeedPlan", shared, names, "shared")
        device = model_device(model) if device is None else torch.device(device)
        self.shared = sorted(set(shared) | {s.name for s in sites
                                            if getattr(s.module, "seed_per_rank", True) is False})
        self._ranks = {s.name: _group_rank(group, s.name in self.shared) for s in sites}
        self.seed, self.last_step, self.group = seed, 0, group
        self.generators: dict[str, torch.Generator] = {}
        for s in sites:  # every check is done: now the model changes
            on_cpu = getattr(s.module, "backend", "torch") == "seeded"
            g = torch.Generator(device="cpu" if on_cpu else device)
            setattr(s.module, "generator", g)  # noqa: B010 (nn.Module's typing)
            if hasattr(s.module, "seed_per_rank"):
                # the plan puts the rank into the seed itself
                setattr(s.module, "seed_per_rank", False)  # noqa: B010
            self.generators[s.name] = g
        self.set_step(0)
        if example_input is None:  # observed at the first call, before anything draws
            _check_at_first_call(model)

    def seeds(self, step: int | None = None) -> dict[str, int]:
        """Each site's seed at ``step`` (default: the current one), on this rank."""
        step = self.last_step if step is None else check_int("SeedPlan.seeds", step, "step")
        return {name: site_seed(self.seed, name, step, self._ranks[name])
                for name in self.generators}

    def set_step(self, step: int) -> None:
        """Seed every site for ``step``: its masks are then those of any run at ``step``."""
        step = check_int("SeedPlan.set_step", step, "step")
        for name, seed in self.seeds(step).items():
            # in place: a checkpoint recompute replays from the generator it saw in forward
            self.generators[name].manual_seed(seed)
        self.last_step = step

    def step(self) -> int:
        """Advance one training step; return the new step."""
        self.set_step(self.last_step + 1)
        return self.last_step

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "last_step": self.last_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        fn = "SeedPlan.load_state_dict"
        if not isinstance(state, Mapping):
            raise UsageTypeError(f"{fn}: expected a mapping with 'seed' and 'last_step', got "
                            f"{type(state).__name__}")
        seed = check_int(fn, state.get("seed"), "seed", 0, SEED_LIMIT)
        step = check_int(fn, state.get("last_step"), "last_step")
        self.seed = seed
        self.set_step(step)
