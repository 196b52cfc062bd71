"""VariationalLSTM / VariationalGRU: torch's modules in eval, the paper's masks in training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import dropkit
import dropkit.nn as dn

PAIRS = [(dn.VariationalLSTM, nn.LSTM), (dn.VariationalGRU, nn.GRU)]
IDS = ["lstm", "gru"]


def _x(t: int = 6, n: int = 5, f: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(t, n, f, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_eval_and_zero_rates_equal_torch_with_the_same_weights(ours, theirs, bidirectional,
                                                               batch_first) -> None:
    torch.manual_seed(0)
    m = ours(4, 6, num_layers=2, bidirectional=bidirectional, batch_first=batch_first,
             dropout=0.3, recurrent_dropout=0.3, output_dropout=0.3)
    t = theirs(4, 6, num_layers=2, bidirectional=bidirectional, batch_first=batch_first)
    t.load_state_dict(m.state_dict())  # the same keys, both ways
    m.load_state_dict(t.state_dict())
    x = _x()
    out_t = t.eval()(x)
    out_m = m.eval()(x)
    assert torch.equal(out_m[0], out_t[0])  # eval is torch's own kernel
    m.train()
    m.dropout = m.recurrent_dropout = m.output_dropout = 0.0
    assert torch.equal(m(x)[0], out_t[0])
    # the step loop itself (what mask_per="sequence" runs) computes torch's recurrence
    loop = m._by_steps(x, None)
    assert torch.allclose(loop[0], out_t[0], atol=1e-6)
    hn_loop = loop[1][0] if isinstance(loop[1], tuple) else loop[1]
    hn_t = out_t[1][0] if isinstance(out_t[1], tuple) else out_t[1]
    assert torch.allclose(hn_loop, hn_t, atol=1e-6)


def _input_mask(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Which input features each sequence's forward used at each step: d out / d x != 0
    (a dropped feature never reaches any gate)."""
    x = x.clone().requires_grad_()
    m(x)[0].sum().backward()
    return x.grad != 0


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
def test_sequence_masks_are_fixed_over_time_and_differ_between_sequences(ours, theirs) -> None:
    g = torch.Generator().manual_seed(1)
    m = ours(16, 8, dropout=0.5, generator=g).train()
    used = _input_mask(m, _x(t=7, n=6, f=16))  # (T, N, F)
    assert all(torch.equal(used[t], used[0]) for t in range(7))  # one mask over time
    assert not all(torch.equal(used[0, n], used[0, 0]) for n in range(6))  # per sequence


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
@pytest.mark.parametrize("tied", [True, False])
def test_step_masks_are_fresh_at_every_step(ours, theirs, tied) -> None:
    """The naive method, for comparison: a new input mask at each step."""
    m = ours(16, 8, dropout=0.5, recurrent_dropout=0.3, mask_per="step", tied=tied,
             generator=torch.Generator().manual_seed(1)).train()
    used = _input_mask(m, _x(t=7, n=6, f=16))
    assert not all(torch.equal(used[t], used[0]) for t in range(7))


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
def test_batch_masks_are_shared_by_every_sequence(ours, theirs) -> None:
    g = torch.Generator().manual_seed(1)
    m = ours(16, 8, dropout=0.5, mask_per="batch", generator=g).train()
    used = _input_mask(m, _x(t=7, n=6, f=16))
    assert all(torch.equal(used[t, n], used[0, 0]) for t in range(7) for n in range(6))


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
def test_the_drop_rate_is_within_binomial_bounds(ours, theirs) -> None:
    p, n, f = 0.3, 400, 25
    m = ours(f, 4, dropout=p, generator=torch.Generator().manual_seed(2)).train()
    dropped = (~_input_mask(m, _x(t=2, n=n, f=f))[0]).double().mean().item()
    sigma = math.sqrt(p * (1 - p) / (n * f))
    assert abs(dropped - p) < 5 * sigma


class _Injected:
    """The step loop with given masks: the batch path's, repeated for every sequence."""

    def __init__(self, m: nn.Module, masks: list[torch.Tensor]) -> None:
        self.masks, self.tied = iter(masks), m.tied
        m._mask = self.mask  # type: ignore[method-assign]

    def mask(self, like: torch.Tensor, p: float) -> torch.Tensor | None:
        if p == 0:
            return None
        cols = next(self.masks)  # (gates, 1, F): the dropped weights' columns, per gate
        if self.tied:
            return cols[0].expand(like.shape)  # every gate's the same: (N, F)
        return cols.expand(cols.shape[0], *like.shape)


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
@pytest.mark.parametrize("tied", [True, False])
def test_the_fused_batch_path_equals_the_step_loop_under_the_same_masks(ours, theirs,
                                                                         tied) -> None:
    torch.manual_seed(0)
    fast = ours(5, 6, num_layers=2, bidirectional=True, dropout=0.4, recurrent_dropout=0.3,
                tied=tied, mask_per="batch", generator=torch.Generator().manual_seed(3))
    loop = ours(5, 6, num_layers=2, bidirectional=True, dropout=0.4, recurrent_dropout=0.3,
                tied=tied, mask_per="sequence")
    loop.load_state_dict(fast.state_dict())
    masks: list[torch.Tensor] = []
    drop = fast._weight_masked

    def recording(weight: torch.Tensor, p: float) -> torch.Tensor:
        out = drop(weight, p)
        g = fast._gates
        ratio = (out / weight).detach().view(g, weight.shape[0] // g, weight.shape[1])[:, :1]
        masks.append(ratio)  # (gates, 1, F): equal rows within a gate
        return out

    fast._weight_masked = recording  # type: ignore[method-assign]
    x = _x(n=3, f=5)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_fast = fast(xa)[0]
    # the loop draws its masks in the order (layer, direction): input, then recurrent
    _Injected(loop, masks)
    out_loop = loop(xb)[0]
    assert torch.allclose(out_fast, out_loop, atol=1e-5)
    out_fast.square().sum().backward()
    out_loop.square().sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-5)
    for (name, a), b in zip(fast.named_parameters(), loop.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
def test_packed_sequences_run_in_batch_mode_and_are_refused_in_sequence_mode(ours,
                                                                            theirs) -> None:
    torch.manual_seed(0)
    m = ours(4, 6, dropout=0.3, recurrent_dropout=0.3, output_dropout=0.2, mask_per="batch")
    t = theirs(4, 6)
    t.load_state_dict(m.state_dict())
    packed = pack_padded_sequence(_x(), torch.tensor([6, 5, 3, 3, 1]), enforce_sorted=False)
    out = m.train()(packed)[0]
    assert torch.equal(out.batch_sizes, packed.batch_sizes)
    assert torch.equal(m.eval()(packed)[0].data, t(packed)[0].data)
    m.mask_per = "sequence"
    with pytest.raises(ValueError, match="takes padded .* not a PackedSequence"):
        m.train()(packed)


def test_output_dropout_shares_one_mask_over_time() -> None:
    m = dn.VariationalLSTM(4, 32, output_dropout=0.5, batch_first=True,
                           generator=torch.Generator().manual_seed(0)).train()
    out = m(_x(t=5, n=8).transpose(0, 1))[0]  # (N, T, H)
    zeros = out == 0
    assert all(torch.equal(zeros[:, t], zeros[:, 0]) for t in range(5))
    assert 0 < zeros.double().mean() < 1


def test_unbatched_input_and_a_given_state() -> None:
    m = dn.VariationalLSTM(4, 6, dropout=0.2, recurrent_dropout=0.2).train()
    h0, c0 = torch.zeros(1, 6), torch.ones(1, 6)
    out, (h, c) = m(_x()[:, 0], (h0, c0))
    assert out.shape == (6, 6) and h.shape == (1, 6) and c.shape == (1, 6)
    g = dn.VariationalGRU(4, 6, recurrent_dropout=0.2).train()
    out, h = g(_x(), torch.zeros(1, 5, 6))
    assert out.shape == (6, 5, 6) and h.shape == (1, 5, 6)


def test_every_rate_is_a_site_and_mc_dropout_samples() -> None:
    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = dn.VariationalLSTM(4, 8, dropout=0.2, recurrent_dropout=0.3,
                                          output_dropout=0.1)
            self.fc = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.rnn(x)[0][-1])

    model = Head().eval()
    assert [s.name for s in dropkit.dropout_sites(model)] == [
        "rnn.dropout", "rnn.recurrent_dropout", "rnn.output_dropout"]
    dropkit.set_rate(model, {"rnn.recurrent_dropout": 0.25})
    assert model.rnn.recurrent_dropout == 0.25
    for mask_per in ("sequence", "batch"):
        model.rnn.mask_per = mask_per
        samples = dropkit.mc_predict(model, _x(), 4)
        assert samples.shape == (4, 5, 3) and not torch.equal(samples[0], samples[1])
    assert not model.training and not model.rnn.training  # modes restored
    assert dropkit.diagnose(model, _x()) == []  # its dropout acts on one layer


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"dropout": 1.0}, ValueError, "VariationalLSTM: expected `dropout` to be a drop probability"),
    ({"recurrent_dropout": -0.1}, ValueError, "expected `recurrent_dropout`"),
    ({"mask_per": "time"}, ValueError, r"expected `mask_per` to be one of \('sequence', "
                                       r"'batch', 'step'\), got mask_per='time'"),
    ({"tied": "yes"}, TypeError, "expected `tied` to be a bool, got str"),
    ({"proj_size": 2}, ValueError, "`proj_size` is not supported"),
])
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        dn.VariationalLSTM(4, 6, **kwargs)


def test_a_bad_rate_assignment_names_the_attribute_and_keeps_the_rate() -> None:
    m = dn.VariationalGRU(4, 6, recurrent_dropout=0.2)
    with pytest.raises(ValueError, match="VariationalGRU: expected `recurrent_dropout`"):
        m.recurrent_dropout = 1.5
    assert m.recurrent_dropout == 0.2
