"""torch.fx: every dropkit module traces as one leaf node and every function as one
call, so FX feature extraction and quantization work as with torch's modules (modelled
on torchvision's ``test_is_leaf_node`` and its traced-module checks)."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn

import dropkit.functional as F
import dropkit.nn as dn
from conftest import gen

X = torch.randn(4, 6, 8, 8, generator=gen(0))  # (N, C, H, W): fits every module below

MODULES = {
    "Dropout": lambda: dn.Dropout(0.5),
    "Dropout1d": lambda: nn.Sequential(nn.Flatten(2), dn.Dropout1d(0.5)),
    "Dropout2d": lambda: dn.Dropout2d(0.5),
    "Dropout3d": lambda: nn.Sequential(nn.Unflatten(1, (2, 3)), dn.Dropout3d(0.5)),
    "AlphaDropout": lambda: dn.AlphaDropout(0.5),
    "FeatureAlphaDropout": lambda: dn.FeatureAlphaDropout(0.5),
    "GaussianDropout": lambda: dn.GaussianDropout(0.5),
    "GaussianNoise": lambda: dn.GaussianNoise(0.5),
    "DropPath": lambda: dn.DropPath(0.5),
    "DropBlock2d": lambda: dn.DropBlock2d(0.5, 3),
    "DropBlock3d": lambda: nn.Sequential(nn.Unflatten(1, (2, 3)), dn.DropBlock3d(0.5, 2)),
    "LockedDropout": lambda: nn.Sequential(nn.Flatten(2), dn.LockedDropout(0.5)),
    "ConcreteDropout": lambda: dn.ConcreteDropout(nn.Identity(), p=0.3),
    "DropConnect": lambda: dn.DropConnect(nn.Conv2d(6, 6, 3, padding=1), 0.5),
    "DropConnectLinear": lambda: dn.DropConnectLinear(8, 8, p=0.5),
    "Dropout-seeded": lambda: dn.Dropout(0.5, backend="seeded"),
}


def _model(name: str) -> nn.Module:
    return nn.Sequential(nn.Conv2d(6, 6, 1), MODULES[name](), nn.ReLU())


@pytest.mark.parametrize("name", list(MODULES))
class TestModulesAreLeaves:
    def test_one_call_module_node_and_no_traced_internals(self, name: str) -> None:
        model = _model(name)
        traced = torch.fx.symbolic_trace(model)
        leaf = model[1][-1] if isinstance(model[1], nn.Sequential) else model[1]
        targets = [n.target for n in traced.graph.nodes if n.op == "call_module"]
        assert traced.get_submodule(targets[-2]) is leaf  # conv, [unflatten], leaf, relu
        assert not [n for n in traced.graph.nodes if n.op == "call_function"]

    @pytest.mark.parametrize("train", [True, False])
    def test_traced_behaves_like_the_original_in_train_and_eval(
            self, name: str, train: bool) -> None:
        model = _model(name).train(train)
        traced = torch.fx.symbolic_trace(model).train(train)
        torch.manual_seed(3)
        expected = model(X)
        torch.manual_seed(3)
        assert torch.equal(traced(X), expected)
        traced.train(not train)  # the flag still reaches the leaf after tracing
        model.train(not train)
        torch.manual_seed(4)
        expected = model(X)
        torch.manual_seed(4)
        assert torch.equal(traced(X), expected)


class TestFunctionsAreOneCall:
    @pytest.mark.parametrize("fn", [F.dropout, F.dropout2d, F.alpha_dropout, F.drop_path,
                                    F.gaussian_dropout, F.feature_alpha_dropout])
    def test_a_users_functional_call(self, fn) -> None:
        class User(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return fn(x, 0.5, self.training) + 1

        traced = torch.fx.symbolic_trace(User())
        calls = [n.target for n in traced.graph.nodes if n.op == "call_function"]
        assert calls[0] is fn and len(calls) == 2  # the dropout, then the add
        torch.manual_seed(5)
        expected = User()(X)
        torch.manual_seed(5)
        assert torch.equal(traced(X), expected)

    def test_bad_arguments_raise_when_the_graph_runs(self) -> None:
        class User(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return F.dropout(x, 1.5)

        traced = torch.fx.symbolic_trace(User())  # checks never run on proxies
        with pytest.raises(ValueError, match=r"^dropout: expected `p` to be a drop probability"):
            traced(X)


class TestRoot:
    def test_a_root_module_is_its_functional_call(self) -> None:
        traced = torch.fx.symbolic_trace(dn.Dropout(0.5))
        (call,) = [n for n in traced.graph.nodes if n.op == "call_function"]
        assert call.target is F.dropout and call.args[2] is True  # training at trace time

    def test_a_seeded_root_refuses_rather_than_freeze_its_seed(self) -> None:
        with pytest.raises(TypeError, match=r"^Dropout: backend='seeded' cannot be traced by "
                                            r"torch.fx as the root module"):
            torch.fx.symbolic_trace(dn.Dropout(0.5, backend="seeded"))
