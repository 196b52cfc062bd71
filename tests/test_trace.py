"""The recorded pass behind the registry: which dropout call, at what rate, whose code."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dropkit._trace import (
    DROPOUT_CALLS,
    Call,
    CallArgs,
    only_training,
    recording,
    split_inputs,
    untouched,
)


class Calls(nn.Module):
    """Makes one of each kind of dropout call, and a raw draw."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(4, 2, dropout=0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x, 0.1, self.training)
        x = torch.dropout(x, 0.2, False)
        q = x.reshape(1, 2, 3, 4)
        x = F.scaled_dot_product_attention(q, q, q, dropout_p=0.4).reshape(6, 4)
        x = self.mha(x[:, None], x[:, None], x[:, None])[0][:, 0]
        return x * (torch.rand(()) > 2)


def _record(m: nn.Module, x: torch.Tensor) -> list[Call]:
    calls: list[Call] = []
    with torch.no_grad(), recording(m, calls.append):
        m(x)
    return calls


class TestRecording:
    def test_every_dropout_call_its_rate_flag_and_owner(self) -> None:
        m = nn.Sequential(nn.Linear(4, 4), Calls()).eval()
        calls = _record(m, torch.randn(6, 4))
        assert [(c.owner, c.function, c.p, c.samples) for c in calls] == [
            ("1", "dropout", 0.1, False),
            ("1", "dropout", 0.2, False),
            ("1", "scaled_dot_product_attention", 0.4, True),
            ("1.mha", "multi_head_attention_forward", 0.3, False),
            ("1", "rand", None, True),
        ]
        assert calls[0].where.endswith(f"test_trace.py:{Calls.forward.__code__.co_firstlineno + 1}")

    def test_calls_outside_the_model_are_not_recorded_and_hooks_go(self) -> None:
        m = nn.Linear(2, 2)
        calls: list[Call] = []
        with recording(m, calls.append):
            F.dropout(torch.ones(3), 0.5)
        assert calls == [] and not m._forward_hooks and not m._forward_pre_hooks

    def test_readers_cover_positional_and_keyword_rates(self) -> None:
        x = torch.ones(2)
        assert DROPOUT_CALLS[F.dropout]((x,), {}) == (0.5, True)
        assert DROPOUT_CALLS[F.dropout]((x, 0.3), {"training": False}) == (0.3, False)
        assert DROPOUT_CALLS[F.scaled_dot_product_attention]((x, x, x, None, 0.2), {}) == (
            0.2, True)


class TestState:
    def test_untouched_restores_modes_buffers_and_streams(self) -> None:
        m = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).eval()
        g = torch.Generator().manual_seed(1)
        m.gen = g
        state = {k: v.clone() for k, v in m.state_dict().items()}
        rng, g_state = torch.get_rng_state(), g.get_state()
        with untouched(m):
            m.train()
            m(torch.randn(4, 3))
            torch.rand(3, generator=g)
        assert not any(t.training for t in m.modules())
        assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())
        assert torch.equal(torch.get_rng_state(), rng) and torch.equal(g.get_state(), g_state)

    def test_only_training_switches_each_module_alone(self) -> None:
        m = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), nn.Dropout())
        m.train()
        with pytest.raises(KeyError), only_training(m, [m[0], m[1]]):
            assert m[0].training and m[1].training and not m[0][1].training and not m.training
            raise KeyError
        assert all(t.training for t in m.modules())


class TestInputs:
    def test_split(self) -> None:
        x = torch.ones(1)
        assert split_inputs("f", x) == ((x,), {})
        assert split_inputs("f", (x, 2)) == ((x, 2), {})
        assert split_inputs("f", {"a": x}) == ((), {"a": x})
        assert split_inputs("f", CallArgs((x,), {"b": 1})) == ((x,), {"b": 1})
        with pytest.raises(TypeError, match=r"^f: expected a mapping input to have str keys"):
            split_inputs("f", {1: x})
