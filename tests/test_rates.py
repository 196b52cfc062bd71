import pytest
import torch
from torch import nn

import dropkit
import dropkit.nn as dn


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Dropout(0.2),
        nn.Linear(8, 8),
        dn.Dropout(0.5),
        nn.Sequential(nn.Linear(8, 8), nn.Dropout2d(0.1), dn.DropPath(0.3)),
        dn.GaussianDropout(0.4),
        dn.DropConnect(nn.Linear(8, 8), 0.5),
        nn.AlphaDropout(0.05),
    )


class TestFindDropout:
    def test_torch_and_dropkit_modules_in_module_order(self) -> None:
        found = dropkit.find_dropout(_model())
        assert [name for name, _ in found] == ["0", "2", "3.1", "3.2", "4", "5", "6"]

    def test_covers_every_dropkit_rate_module(self) -> None:
        mods = [
            dn.LockedDropout(), dn.EmbeddingDropout(nn.Embedding(3, 2)), dn.DropBlock2d(0.1, 3),
            dn.DropConnectLinear(2, 2), dn.ConcreteDropout(), dn.FeatureAlphaDropout(),
        ]
        assert len(dropkit.find_dropout(nn.ModuleList(mods))) == len(mods)

    def test_no_dropout(self) -> None:
        assert dropkit.find_dropout(nn.Linear(2, 2)) == []


class TestSetRate:
    def test_one_float_for_all(self) -> None:
        m = _model()
        dropkit.set_rate(m, 0.25)
        assert all(mod.p == 0.25 for _, mod in dropkit.find_dropout(m))

    def test_mapping_changes_only_named(self) -> None:
        m = _model()
        applied = dropkit.set_rate(m, {"2": 0.1, "3.2": 0.05})
        assert applied == {"2": 0.1, "3.2": 0.05}
        rates = {n: mod.p for n, mod in dropkit.find_dropout(m)}
        assert rates["2"] == 0.1 and rates["3.2"] == 0.05 and rates["0"] == 0.2

    def test_callable_none_leaves_alone(self) -> None:
        m = _model()
        dropkit.set_rate(m, lambda name, mod: 0.0 if isinstance(mod, nn.Dropout) else None)
        rates = {n: mod.p for n, mod in dropkit.find_dropout(m)}
        assert rates["0"] == 0.0 and rates["2"] == 0.5  # dkn.Dropout is not a torch Dropout

    @pytest.mark.parametrize("rate", [1.5, {"2": -0.1}, lambda n, m: float("nan")])
    def test_invalid_rate_changes_nothing(self, rate) -> None:
        m = _model()
        before = {n: mod.p for n, mod in dropkit.find_dropout(m)}
        with pytest.raises(ValueError, match=r"^set_rate: site '\d[.\d]*': expected `p`"):
            dropkit.set_rate(m, rate)
        assert {n: mod.p for n, mod in dropkit.find_dropout(m)} == before

    def test_gaussian_dropout_cannot_take_one_and_nothing_changes(self) -> None:
        m = _model()
        with pytest.raises(ValueError, match=r"site '4'.*\[0, 1\)"):
            dropkit.set_rate(m, 1.0)
        assert dropkit.find_dropout(m)[0][1].p == 0.2

    def test_unknown_name(self) -> None:
        with pytest.raises(ValueError, match=r"^set_rate: \['nope'\] are not dropout sites"):
            dropkit.set_rate(_model(), {"nope": 0.1})

    def test_concrete_dropout_rate_is_reset(self) -> None:
        m = dn.ConcreteDropout(p=0.3)
        dropkit.set_rate(m, 0.1)
        assert m.p == pytest.approx(0.1)
        with pytest.raises(ValueError, match="open interval"):
            m.p = 0.0

    def test_rates_reach_forward(self) -> None:
        m = nn.Sequential(dn.Dropout(0.5))
        dropkit.set_rate(m, 0.0)
        x = torch.randn(4, 4)
        assert torch.equal(m(x), x)
