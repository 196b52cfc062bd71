import pytest
import torch

import dropkit.functional as F
import dropkit.nn as dn
from conftest import assert_binomial, gen


class TestDropPath:
    def test_row_mode_drops_whole_samples(self) -> None:
        n = 20_000
        out = F.drop_path(torch.ones(n, 3, 4), 0.2, generator=gen())
        rows = out.flatten(1)
        assert ((rows == 0).all(1) | (rows == 1.25).all(1)).all()
        assert_binomial(int((rows[:, 0] == 0).sum()), n, 0.2)

    def test_batch_mode_drops_all_or_nothing(self) -> None:
        outcomes = set()
        for seed in range(20):
            out = F.drop_path(torch.ones(8, 3), 0.5, mode="batch", generator=gen(seed))
            assert len(out.unique()) == 1
            outcomes.add(out[0, 0].item())
        assert outcomes == {0.0, 2.0}

    def test_without_scale_by_keep(self) -> None:
        out = F.drop_path(torch.ones(64, 2), 0.5, scale_by_keep=False, generator=gen())
        assert set(out.unique().tolist()) == {0.0, 1.0}

    def test_unknown_mode(self) -> None:
        with pytest.raises(ValueError, match=r"^drop_path: expected `mode` to be 'row' or 'batch'"):
            F.drop_path(torch.ones(2), 0.5, mode="col")
        with pytest.raises(ValueError, match=r"^DropPath: expected `mode`"):
            dn.DropPath(0.1, mode="col")

    def test_row_mode_needs_a_batch_dim(self) -> None:
        with pytest.raises(ValueError, match=r"^drop_path: mode='row' needs an \(N, \*\) input"):
            F.drop_path(torch.tensor(1.0), 0.5)

    @pytest.mark.parametrize("make, p, mode, scale", [
        (lambda: dn.DropPath(drop_prob=0.1), 0.1, "row", True),  # timm's keyword
        (lambda: dn.DropPath(0.1, False), 0.1, "row", False),  # timm's positional scale_by_keep
        (lambda: dn.DropPath(0.2, "batch"), 0.2, "batch", True),  # torchvision's (p, mode)
        (lambda: dn.DropPath(), 0.0, "row", True),  # timm's default
    ])
    def test_timm_and_torchvision_signatures(self, make, p, mode, scale) -> None:
        m = make()
        assert (m.p, m.drop_prob, m.mode, m.scale_by_keep) == (p, p, mode, scale)

    def test_drop_prob_sets_the_rate_as_timm_code_does(self) -> None:
        m = dn.DropPath(0.1)
        m.drop_prob = 0.3
        assert m.p == 0.3
        with pytest.raises(ValueError, match=r"^DropPath: expected `p` to be a drop"):
            m.drop_prob = 2.0

    def test_ambiguous_signatures_are_errors(self) -> None:
        with pytest.raises(TypeError, match=r"^DropPath: got both `p` \(0.1\) and its timm "
                                            r"name `drop_prob` \(0.2\)"):
            dn.DropPath(0.1, drop_prob=0.2)
        with pytest.raises(TypeError, match=r"^DropPath: got `scale_by_keep` twice"):
            dn.DropPath(0.1, False, True)

    def test_residual_use_and_repr(self) -> None:
        m = dn.DropPath(0.1)
        assert repr(m) == "DropPath(p=0.1, mode='row', scale_by_keep=True)"
        x = torch.randn(4, 8)
        m.eval()
        assert torch.equal(x + m(x), 2 * x)
