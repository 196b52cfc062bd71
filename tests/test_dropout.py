import pytest
import torch

import dropkit.functional as F
import dropkit.nn as dn
from conftest import assert_binomial, assert_mean, gen


class TestDropout:
    @pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
    def test_drop_fraction_and_mean_within_binomial_bounds(self, p: float) -> None:
        n = 1_000_000
        out = F.dropout(torch.ones(n), p, generator=gen())
        assert_binomial(int((out == 0).sum()), n, p)
        # each output is Bernoulli(1-p) / (1-p): mean 1, std sqrt(p / (1-p))
        assert_mean(out, 1.0, (p / (1 - p)) ** 0.5)

    def test_broadcast_dims_share_one_draw(self) -> None:
        out = F.dropout(torch.ones(16, 5, 7), 0.5, broadcast_dims=(1, -1), generator=gen())
        per_row = out.flatten(1)
        assert ((per_row == 0).all(1) | (per_row == 2).all(1)).all()
        assert 0 < int((per_row[:, 0] == 0).sum()) < 16

    @pytest.mark.parametrize("dims, message", [((3,), "out of range"), ((0, -2), "repeats")])
    def test_bad_broadcast_dims(self, dims: tuple[int, ...], message: str) -> None:
        with pytest.raises(ValueError, match=rf"^dropout: `broadcast_dims` .*{message}"):
            F.dropout(torch.ones(2, 3), 0.5, broadcast_dims=dims)

    def test_inplace_overwrites_input(self) -> None:
        x = torch.ones(100)
        out = F.dropout(x, 0.5, inplace=True, generator=gen())
        assert out is x
        assert set(x.unique().tolist()) == {0.0, 2.0}


@pytest.mark.parametrize(
    "fn, batched, spatial",
    [
        (F.dropout1d, (8, 6, 10), 1),
        (F.dropout2d, (8, 6, 5, 5), 2),
        (F.dropout3d, (8, 6, 3, 4, 4), 3),
    ],
)
class TestChannelDropout:
    def test_zeroes_whole_channels(self, fn, batched, spatial) -> None:
        out = fn(torch.ones(batched), 0.5, generator=gen())
        per_channel = out.flatten(2)  # (N, C, prod(spatial))
        assert ((per_channel == 0).all(-1) | (per_channel == 2).all(-1)).all()

    def test_channel_drop_rate_within_binomial_bound(self, fn, batched, spatial) -> None:
        n_maps = 20_000
        out = fn(torch.ones(n_maps, *batched[1:]), 0.3, generator=gen(1))
        dropped = int((out.flatten(2) == 0).all(-1).sum())
        assert_binomial(dropped, n_maps * batched[1], 0.3)

    def test_unbatched_input_is_channels_first(self, fn, batched, spatial) -> None:
        # (C, *spatial) is one sample; the mask must be per channel, never per "batch row".
        out = fn(torch.ones(batched[1:]), 0.5, generator=gen(2))
        per_channel = out.flatten(1)
        assert ((per_channel == 0).all(-1) | (per_channel == 2).all(-1)).all()

    def test_wrong_rank_names_the_layouts(self, fn, batched, spatial) -> None:
        name = fn.__name__
        with pytest.raises(ValueError, match=rf"^{name}: expected a {spatial + 1}D .* got a "):
            fn(torch.ones((2,) * (spatial + 3)), 0.5)
        with pytest.raises(ValueError, match=rf"got a {spatial}D input"):
            fn(torch.ones((2,) * spatial), 0.5)


class TestDropInForTorch:
    @pytest.mark.parametrize(
        "ours, theirs, shape",
        [
            (dn.Dropout, torch.nn.Dropout, (4, 8)),
            (dn.Dropout1d, torch.nn.Dropout1d, (4, 3, 8)),
            (dn.Dropout2d, torch.nn.Dropout2d, (4, 3, 5, 5)),
            (dn.Dropout3d, torch.nn.Dropout3d, (4, 3, 2, 5, 5)),
            (dn.AlphaDropout, torch.nn.AlphaDropout, (4, 8)),
            (dn.FeatureAlphaDropout, torch.nn.FeatureAlphaDropout, (4, 3, 5, 5)),
        ],
    )
    def test_same_constructor_repr_and_eval(self, ours, theirs, shape) -> None:
        a, b = ours(0.2, True), theirs(0.2, True)  # positional (p, inplace) as torch
        assert repr(a) == repr(b)
        assert repr(ours(1)) == repr(theirs(1)) and repr(ours(p=0)) == repr(theirs(p=0))
        assert a.state_dict().keys() == b.state_dict().keys()
        a.eval()
        b.eval()
        x = torch.randn(shape)
        assert torch.equal(a(x), b(x))
        ids = torch.arange(int(torch.tensor(shape).prod())).reshape(shape)
        assert a(ids) is ids and b(ids) is ids  # a no-op call takes any dtype

    def test_training_mode_has_torchs_statistics(self) -> None:
        torch.manual_seed(0)
        out = dn.Dropout(0.25)(torch.ones(500_000))
        assert_binomial(int((out == 0).sum()), 500_000, 0.25)
