import pytest
import torch

import dropkit.functional as F
import dropkit.nn as dn
from conftest import assert_binomial, gen


class TestLockedDropout:
    def test_mask_is_shared_over_time(self) -> None:
        out = F.locked_dropout(torch.ones(7, 32, 16), 0.5, generator=gen())  # (T, N, H)
        assert torch.equal(out, out[:1].expand_as(out))
        assert_binomial(int((out[0] == 0).sum()), 32 * 16, 0.5)

    def test_batch_first_shares_over_dim_one(self) -> None:
        out = F.locked_dropout(torch.ones(32, 7, 16), 0.5, batch_first=True, generator=gen())
        assert torch.equal(out, out[:, :1].expand_as(out))
        assert not torch.equal(out[0], out[1])  # sequences get their own masks

    def test_unbatched_sequence(self) -> None:
        out = F.locked_dropout(torch.ones(7, 16), 0.5, generator=gen())
        assert torch.equal(out, out[:1].expand_as(out))

    def test_wrong_rank(self) -> None:
        with pytest.raises(ValueError, match=r"^locked_dropout: expected a 3D .* got a 4D input"):
            F.locked_dropout(torch.ones(2, 3, 4, 5), 0.5)

    def test_module_repr_and_rnn_use(self) -> None:
        m = dn.LockedDropout(0.25, batch_first=True)
        assert repr(m) == "LockedDropout(p=0.25, batch_first=True)"
        lstm = torch.nn.LSTM(16, 8, batch_first=True)
        out, _ = lstm(m(torch.randn(4, 7, 16)))
        assert out.shape == (4, 7, 8)
