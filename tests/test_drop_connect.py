import copy

import pytest
import torch
from torch import nn

import dropkit.functional as F
import dropkit.nn as dn
from conftest import assert_binomial, gen


class TestDropConnectFunction:
    def test_drop_rate_and_scale(self) -> None:
        w = torch.ones(400, 500)
        out = F.drop_connect(w, 0.3, generator=gen())
        values = out.unique()
        assert len(values) == 2 and values[0] == 0
        torch.testing.assert_close(values[1], torch.tensor(1 / 0.7))
        assert_binomial(int((out == 0).sum()), w.numel(), 0.3)

    def test_rowwise_drops_whole_output_units(self) -> None:
        out = F.drop_connect(torch.ones(64, 5, 3, 3), 0.5, rowwise=True, generator=gen())
        rows = out.flatten(1)
        assert ((rows == 0).all(1) | (rows == 2).all(1)).all()


class TestDropConnectLinear:
    def test_is_a_drop_in_for_linear(self) -> None:
        lin = nn.Linear(6, 4)
        dc = dn.DropConnectLinear(6, 4, p=0.5)
        dc.load_state_dict(lin.state_dict())
        assert isinstance(dc, nn.Linear)
        assert "p=0.5" in repr(dc)
        x = torch.randn(3, 6)
        dc.eval()
        assert torch.equal(dc(x), lin(x))

    def test_training_uses_a_masked_weight(self) -> None:
        dc = dn.DropConnectLinear(6, 4, p=0.5, generator=gen(1))
        x = torch.randn(3, 6)
        w = F.drop_connect(dc.weight, 0.5, generator=gen(1))
        torch.testing.assert_close(dc(x), torch.nn.functional.linear(x, w, dc.bias))

    def test_rate_is_validated(self) -> None:
        with pytest.raises(ValueError, match=r"^DropConnectLinear: expected `p`"):
            dn.DropConnectLinear(2, 2, p=-0.5)
        m = dn.DropConnectLinear(2, 2)
        with pytest.raises(ValueError):
            m.p = 2.0

    def test_compiles_fullgraph(self) -> None:
        m = dn.DropConnectLinear(6, 4, p=0.5)
        out = torch.compile(m, fullgraph=True, backend="aot_eager")(torch.randn(2, 6))
        assert out.shape == (2, 4)


def _masked_call(module, names, x, seed, p=0.5):
    """What DropConnect must compute: the module with each named weight dropped."""
    g = gen(seed)
    weights = {n: F.drop_connect(module.get_parameter(n), p, generator=g) for n in names}
    return torch.func.functional_call(module, weights, (x,))


@pytest.mark.parametrize(
    "make, names, x",
    [
        (lambda: nn.Linear(6, 4), ("weight",), torch.randn(3, 6)),
        (
            lambda: nn.Conv2d(4, 6, 3, stride=2, groups=2, bias=True),
            ("weight", "bias"),
            torch.randn(2, 4, 9, 9),
        ),
        (lambda: nn.LSTM(5, 7), ("weight_hh_l0",), torch.randn(6, 2, 5)),
    ],
    ids=["linear", "conv-stride-groups-bias", "lstm-recurrent"],
)
class TestDropConnectWrapper:
    def test_eval_is_exactly_the_wrapped_module(self, make, names, x) -> None:
        inner = make()
        wrapped = dn.DropConnect(inner, 0.5, params=names).eval()
        inner.eval()
        assert torch.equal(_first(wrapped(x)), _first(inner(x)))

    def test_training_drops_the_named_weights_and_keeps_them(self, make, names, x) -> None:
        inner = make()
        before = {k: v.clone() for k, v in inner.state_dict().items()}
        wrapped = dn.DropConnect(inner, 0.5, params=names, generator=gen(2))
        out = _first(wrapped(x))
        torch.testing.assert_close(out, _first(_masked_call(inner, names, x, 2)))
        assert not torch.allclose(out, _first(inner(x)))
        for k, v in inner.state_dict().items():
            assert torch.equal(v, before[k]), f"{k} changed"

    def test_gradient_reaches_the_original_weights(self, make, names, x) -> None:
        wrapped = dn.DropConnect(make(), 0.5, params=names, generator=gen(3))
        _first(wrapped(x)).sum().backward()
        grad = wrapped.module.get_parameter(names[0]).grad
        assert grad is not None and (grad == 0).any() and (grad != 0).any()

    def test_pretrained_weights_load(self, make, names, x) -> None:
        inner = make()
        wrapped = dn.DropConnect(make(), 0.5, params=names)
        wrapped.module.load_state_dict(inner.state_dict())
        assert all(k.startswith("module.") for k in wrapped.state_dict())


def _first(out):
    return out[0] if isinstance(out, tuple) else out


class TestDropConnectWrapperArguments:
    def test_unknown_parameter(self) -> None:
        with pytest.raises(ValueError, match=r"^DropConnect: Linear has no parameter 'w'"):
            dn.DropConnect(nn.Linear(2, 2), 0.5, params=("w",))

    def test_params_must_be_a_sequence_of_names(self) -> None:
        with pytest.raises(ValueError, match=r"^DropConnect: expected `params`"):
            dn.DropConnect(nn.Linear(2, 2), 0.5, params="weight")

    def test_not_a_module(self) -> None:
        with pytest.raises(TypeError, match=r"^DropConnect: expected an nn.Module"):
            dn.DropConnect(lambda x: x, 0.5)

    def test_bad_rate(self) -> None:
        with pytest.raises(ValueError, match=r"^DropConnect: expected `p`"):
            dn.DropConnect(nn.Linear(2, 2), 1.2)

    def test_deepcopy_keeps_weights_and_generator_state(self) -> None:
        m = dn.DropConnect(nn.Linear(3, 2), 0.5, generator=gen(1))
        clone = copy.deepcopy(m)
        for (name, w), (_, w_clone) in zip(m.named_parameters(), clone.named_parameters(),
                                           strict=True):
            assert torch.equal(w, w_clone) and w is not w_clone, name  # copied, not shared
        x = torch.randn(4, 3)
        assert torch.equal(m(x), clone(x))  # the generator's state is copied too
        assert clone.state_dict().keys() == m.state_dict().keys()

    def test_repr_and_compile(self) -> None:
        m = dn.DropConnect(nn.Linear(3, 2), 0.25)
        assert "p=0.25, params=('weight',)" in repr(m)
        out = torch.compile(m, fullgraph=True, backend="aot_eager")(torch.randn(4, 3))
        assert out.shape == (4, 2)
