"""LayerDrop: skipped blocks cost nothing, the skip rate within binomial bounds, eval runs
every block, pruning keeps the documented blocks, the registry drives it, the coins
replay under checkpoint and come from the generator; bad arguments are one-line errors."""

from __future__ import annotations

import pytest
import torch
import torch.utils.checkpoint as cp
from torch import nn

import dropkit
import dropkit.nn as dn
from conftest import assert_binomial, gen


class Counting(nn.Module):
    """A residual block that counts its calls."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x + torch.relu(self.fc(x))


def stack(n: int = 6, p: float = 0.3, **kw) -> dn.LayerDrop:
    torch.manual_seed(0)
    return dn.LayerDrop([Counting() for _ in range(n)], p, **kw)


def test_skipped_blocks_are_not_run_and_skip_at_their_rate() -> None:
    m = stack(6, 0.3, generator=gen(1))
    x = torch.randn(2, 4)
    calls = 500
    for _ in range(calls):
        m(x)
    for block in m.layers:  # each block: Binomial(500, 0.7) calls
        assert_binomial(block.calls, calls, 0.7)


def test_a_skipped_block_passes_its_input_on_and_eval_runs_every_block() -> None:
    m = stack(3, 0.5, generator=gen(2))
    x = torch.randn(5, 4)
    m.eval()
    out = m(x)
    assert [b.calls for b in m.layers] == [1, 1, 1]
    expected = x
    for b in m.layers:
        expected = b(expected)
    assert torch.equal(out, expected)
    m.train()
    m._weights = (0.0, 1.0, 0.0)  # only block 1 may be skipped
    m.p = 0.999
    before = [b.calls for b in m.layers]
    out = m(x)
    assert [b.calls - c for b, c in zip(m.layers, before, strict=True)] == [1, 0, 1]
    assert torch.equal(out, m.layers[2](m.layers[0](x)))


def test_linear_and_explicit_rates() -> None:
    assert stack(4, 0.4, schedule="linear").rates == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert stack(4, 0.4).rates == [0.4] * 4
    m = dn.LayerDrop([Counting() for _ in range(3)], rates=[0.1, 0.0, 0.2])
    assert m.p == 0.2 and m.rates == pytest.approx([0.1, 0.0, 0.2])
    m.p = 0.4  # set_rate and schedules scale every block
    assert m.rates == pytest.approx([0.2, 0.0, 0.4])


def test_the_same_generator_seed_gives_the_same_skips() -> None:
    runs = []
    for _ in range(2):
        m = stack(5, 0.5, generator=gen(7))
        for _ in range(20):
            m(torch.randn(1, 4))
        runs.append([b.calls for b in m.layers])
    assert runs[0] == runs[1]


def test_prune_keeps_every_other_block_for_half_the_depth() -> None:
    m = stack(6)
    # the paper's "every other": at rate 1/2 drop depths 2, 4, 6 (from 1), keep 0, 2, 4
    assert m.kept_for(3) == [0, 2, 4] and m.kept_for(6) == list(range(6))
    assert m.kept_for(1) == [0] and m.kept_for(4) == [0, 1, 3, 4]
    half = m.prune(3)
    assert len(half) == 3 and all(a is b for a, b in zip(half.layers, [m.layers[i] for i in
                                                                      (0, 2, 4)], strict=True))
    assert list(m.prune([0, 4]).layers) == [m.layers[0], m.layers[4]]
    half.eval()
    x = torch.randn(2, 4)
    assert torch.equal(half(x), m.layers[4](m.layers[2](m.layers[0](x))))


def test_the_registry_drives_it_and_mc_predict_loops() -> None:
    model = nn.Sequential(nn.Linear(3, 4), stack(4, 0.3), nn.Linear(4, 2))
    x = torch.randn(6, 3)
    sites = {s.name: s for s in dropkit.dropout_sites(model, x)}
    assert sites["1.p"].kind == "attribute" and sites["1.p"].shares_noise_across_batch
    assert sites["1.p"].sampled is None  # the discovery pass holds it at 0
    dropkit.set_rate(model, 0.5)
    assert model[1].p == 0.5
    assert [(name, m.p) for name, m in dropkit.find_dropout(model)] == [("1.p", 0.5)]
    out = dropkit.mc_predict(model, x, 20)  # one coin per batch: vmap cannot, the loop does
    assert len({tuple(o.flatten().tolist()) for o in out}) > 1
    with pytest.raises(ValueError, match="strategy 'batch' cannot sample attribute site '1.p'"):
        dropkit.mc_predict(model, x, 4, strategy="batch")


def test_a_checkpointed_recompute_draws_the_forward_s_coins() -> None:
    m = stack(6, 0.5)  # the global generator
    for reentrant in (True, False):
        grads = []
        for checkpointed in (False, True):
            x = torch.ones(3, 4, requires_grad=True)
            torch.manual_seed(3)
            out = (cp.checkpoint(m, x, use_reentrant=reentrant, preserve_rng_state=False)
                   if checkpointed else m(x))
            out.sum().backward()
            grads.append((out.detach(), x.grad))
        assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


def test_diagnose_reports_a_block_that_changes_the_shape() -> None:
    model = nn.Sequential(dn.LayerDrop([nn.Linear(4, 4), nn.Linear(4, 6), nn.Linear(6, 6)],
                                       0.2))
    findings = [f for f in dropkit.diagnose(model, torch.randn(2, 4))
                if f.code == "layerdrop-shape-change"]
    assert [f.module for f in findings] == ["0.layers.1"]
    assert "(2, 4) to (2, 6)" in findings[0].message
    assert not [f for f in dropkit.diagnose(nn.Sequential(stack(3)), torch.randn(2, 4))
                if f.code == "layerdrop-shape-change"]


@pytest.mark.parametrize("call, match", [
    (lambda: dn.LayerDrop([], 0.1), r"^LayerDrop: expected `layers` to be one or more"),
    (lambda: dn.LayerDrop([nn.Identity()], 1.0), r"^LayerDrop: expected `p` to be a drop "
                                                 r"probability in \[0, 1\)"),
    (lambda: dn.LayerDrop([nn.Identity()], 0.1, schedule="cosine"),
     r"^LayerDrop: expected `schedule` to be one of"),
    (lambda: dn.LayerDrop([nn.Identity()] * 2, rates=[0.1]), r"^LayerDrop: expected one rate "
                                                            r"per block \(2\), got 1"),
    (lambda: stack(4).prune(5), r"^LayerDrop.prune: expected `keep` to be an int in \[1, 4\]"),
    (lambda: stack(4).prune([0, 9]), r"^LayerDrop.prune: expected indices in \[0, 4\)"),
])
def test_bad_arguments_are_one_clear_error(call, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_a_bad_rate_assignment_leaves_the_rate_unchanged() -> None:
    m = stack(2, 0.2)
    with pytest.raises(ValueError, match=r"^LayerDrop: expected `p`"):
        m.p = 1.5
    assert m.p == 0.2
