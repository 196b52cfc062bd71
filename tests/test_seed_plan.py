"""SeedPlan: every step's masks follow from (seed, step), per site and per rank."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import dropkit.nn as dn
from conftest import torchrun
from dropkit.tools.seed_plan import SeedPlan, site_seed


def _net(backend: str = "torch") -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), dn.Dropout(0.5, backend=backend), nn.Linear(32, 32),
                         dn.Dropout(0.5, backend=backend), dn.DropPath(0.3))


def _masks(net: nn.Module, steps: int, plan: SeedPlan) -> list[torch.Tensor]:
    x = torch.ones(16, 8)
    out = []
    for _ in range(steps):
        out.append(net(x).detach())
        plan.step()
    return out


@pytest.mark.parametrize("backend", ["torch", "seeded"])
def test_a_fresh_plan_of_the_same_seed_resumes_with_the_same_masks(backend: str) -> None:
    net = _net(backend)
    straight = _masks(net, 4, SeedPlan(net, seed=3))
    resumed_net = _net(backend)
    plan = SeedPlan(resumed_net, seed=3)
    plan.load_state_dict({"seed": 3, "last_step": 2})  # a run killed after step 1
    resumed = _masks(resumed_net, 2, plan)
    assert all(torch.equal(a, b) for a, b in zip(straight[2:], resumed, strict=True))
    # and the steps themselves differ (4 draws of 16 x 32 units: equal only by a bug)
    assert not any(torch.equal(straight[i], straight[j]) for i in range(4) for j in range(i))


def test_each_site_draws_its_own_stream_even_from_one_shared_generator() -> None:
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(dn.Dropout(0.5, generator=g), dn.Dropout(0.5, generator=g))
    plan = SeedPlan(net, seed=1)
    assert net[0].generator is not net[1].generator and net[0].generator is not g
    x = torch.ones(64, 64)
    assert not torch.equal(net[0](x), net[1](x))
    assert plan.seeds() == {name: site_seed(1, name, 0, 0) for name in ("0", "1")}


def test_seeds_are_the_same_in_another_python_process() -> None:
    """A hash that is stable across processes (Python's own hash() is salted)."""
    code = ("from dropkit.tools.seed_plan import site_seed; "
            "print(site_seed(5, 'encoder.drop', 12, 1))")
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, timeout=120).stdout
    assert int(out) == site_seed(5, "encoder.drop", 12, 1)


def test_a_checkpoint_recompute_after_the_plan_stepped_replays_the_forward() -> None:
    """plan.step() between forward and backward reseeds the generators in place; the
    recompute still draws the forward's masks."""
    grads = []
    for ckpt in (False, True):
        net = _net()
        plan = SeedPlan(net, seed=9)
        x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1)).requires_grad_()
        y = checkpoint(net, x, use_reentrant=False, preserve_rng_state=False) if ckpt else net(x)
        plan.step()
        y.square().sum().backward()
        grads.append([x.grad, *(p.grad for p in net.parameters())])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_state_dict_holds_the_seed_and_the_step() -> None:
    net = _net()
    plan = SeedPlan(net, seed=4)
    plan.step()
    plan.step()
    assert plan.state_dict() == {"seed": 4, "last_step": 2}
    other = SeedPlan(_net(), seed=0)
    other.load_state_dict(plan.state_dict())
    assert other.seeds() == plan.seeds()


def test_a_site_without_a_generator_is_named_and_nothing_changes() -> None:
    g = torch.Generator()
    net = nn.Sequential(dn.Dropout(0.5, generator=g), nn.Dropout(0.5))
    with pytest.raises(ValueError, match=r"cannot seed '1' \(Dropout, module\)"):
        SeedPlan(net, seed=0)
    assert net[0].generator is g and net[0].seed_per_rank


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"seed": -1}, ValueError, r"expected `seed` to be an int in \[0, 9223372036854775808\)"),
    ({"seed": 1.5}, TypeError, "expected `seed` to be an int, got float"),
    ({"seed": 0, "shared": ["9"]}, ValueError, r"`shared` names \['9'\], which are not"),
])
def test_bad_arguments_are_refused_before_any_change(kwargs: dict, error: type,
                                                     match: str) -> None:
    net = _net()
    with pytest.raises(error, match=match):
        SeedPlan(net, **kwargs)
    assert net[1].generator is None


def test_bad_state_is_refused_and_the_plan_keeps_its_step() -> None:
    plan = SeedPlan(_net(), seed=0)
    plan.step()
    with pytest.raises(ValueError, match="expected `last_step` to be an int >= 0"):
        plan.load_state_dict({"seed": 0, "last_step": -2})
    with pytest.raises(TypeError, match="expected `seed` to be an int, got NoneType"):
        plan.load_state_dict({"last_step": 0})
    with pytest.raises(TypeError, match="expected a mapping"):
        plan.load_state_dict([0, 1])  # type: ignore[arg-type]
    assert plan.state_dict() == {"seed": 0, "last_step": 1}


def test_a_model_without_sites_is_refused() -> None:
    with pytest.raises(ValueError, match="no dropout site"):
        SeedPlan(nn.Linear(2, 2), seed=0)


def test_modules_built_with_seed_per_rank_false_are_shared() -> None:
    net = nn.Sequential(dn.Dropout(0.5, seed_per_rank=False), dn.Dropout(0.5))
    assert SeedPlan(net, seed=0).shared == ["0"]


@pytest.mark.slow
def test_two_gloo_ranks_share_the_masks_of_shared_sites_only(tmp_path: Path) -> None:
    worker = Path(__file__).with_name("seed_plan_worker.py")
    torchrun(str(worker), str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for backend in ("torch", "seeded"):
        a, b = r0[backend], r1[backend]
        for step in range(3):
            # site "1" (sharded activations): a mask of its own on each rank
            assert not torch.equal(a["world"]["1"][step], b["world"]["1"][step])
            # site "3" (replicated): one mask for the group of both ranks...
            assert torch.equal(a["world"]["3"][step], b["world"]["3"][step])
            # ... and different masks for two groups of one rank (data-parallel replicas)
            assert not torch.equal(a["singles"]["3"][step], b["singles"]["3"][step])
            # a rerun from the same seed draws the same masks on each rank
            for ours in (a, b):
                for site in ("1", "3"):
                    assert torch.equal(ours["world"][site][step], ours["rerun"][site][step])


def test_a_transformers_model_is_refused_with_its_sites_named() -> None:
    """Its dropout draws inside transformers' code, from torch's global generator."""
    pytest.importorskip("transformers")
    from foreign import bert

    model = bert(attention=0.1, hidden=0.1)
    with pytest.raises(ValueError, match=r"cannot seed 'bert.embeddings.dropout' \(Dropout, "
                                         r"module\), .*no plan can give them a stream"):
        SeedPlan(model, seed=0)


def _electra_with_dropkit_dropout() -> torch.nn.Module:
    """ELECTRA with every nn.Dropout swapped for dropkit's: its attention still passes
    ``self.dropout.p`` to the fused call, which draws from torch's global generator."""
    from foreign import electra

    model = electra(p=0.3)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Dropout):
                setattr(parent, name, dn.Dropout(child.p))
    return model


def test_a_site_whose_rate_a_fused_call_reads_is_refused_by_name() -> None:
    pytest.importorskip("transformers")
    from foreign import text_batch

    model, x = _electra_with_dropkit_dropout(), text_batch()
    site = r"'electra.encoder.layer.0.attention.self.dropout' \(Dropout: its rate is passed to"
    with pytest.raises(ValueError, match=r"^SeedPlan: cannot seed " + site):
        SeedPlan(model, seed=0, example_input=x)
    SeedPlan(model, seed=0)  # no input: observed at the first call, before anything draws
    model.train()
    for _ in range(2):  # and at every call after a refused one
        with pytest.raises(RuntimeError, match=r"^SeedPlan: cannot seed " + site):
            model(**x)


def test_sites_whose_own_forward_draws_are_planned_with_an_example_input() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), dn.Dropout(0.5),
                                torch.nn.Linear(8, 2))
    x = torch.randn(3, 4)
    plan = SeedPlan(model, seed=0, example_input=x)
    model.train()
    outs = []
    for global_seed in (1, 2):  # the global stream does not matter: the plan's does
        torch.manual_seed(global_seed)
        plan.set_step(3)
        outs.append(model(x))
    assert torch.equal(outs[0], outs[1])
