"""Consistent MC dropout: sample t is one network, the same for every input and call."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit
import dropkit.nn as dn


class Reveal(nn.Module):
    """Its output is the site's noise itself: ones in, noise out."""

    def __init__(self, site: nn.Module) -> None:
        super().__init__()
        self.site = site

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.site(x)


SITES = {
    "torch Dropout": (lambda: nn.Dropout(0.5), (12, 16)),
    "dropkit Dropout": (lambda: dn.Dropout(0.5), (12, 16)),
    "torch Dropout2d": (lambda: nn.Dropout2d(0.5), (12, 6, 3, 3)),
    "dropkit Dropout1d": (lambda: dn.Dropout1d(0.5), (12, 6, 5)),
    "torch AlphaDropout": (lambda: nn.AlphaDropout(0.3), (12, 16)),
    "dropkit FeatureAlphaDropout": (lambda: dn.FeatureAlphaDropout(0.3), (12, 6, 3, 3)),
    "DropPath": (lambda: dn.DropPath(0.5), (12, 4, 8)),
    "GaussianDropout": (lambda: dn.GaussianDropout(0.3), (12, 16)),
    "GaussianNoise": (lambda: dn.GaussianNoise(0.5), (12, 16)),
}


@pytest.mark.parametrize("name", list(SITES))
def test_every_input_of_a_sample_sees_the_same_mask(name: str) -> None:
    build, shape = SITES[name]
    model = Reveal(build()).eval()
    ones = torch.ones(shape)
    samples = dropkit.mc_predict(model, ones, 6, consistent=3)
    for t in range(6):
        assert all(torch.equal(samples[t, n], samples[t, 0]) for n in range(shape[0]))
    assert not all(torch.equal(samples[t], samples[0]) for t in range(6))  # samples differ
    # the same seed: the same networks, whatever the batch
    again = dropkit.mc_predict(model, ones[:5], 6, consistent=3)
    assert torch.equal(again, samples[:, :5])
    assert not model.training


def test_locked_dropout_shares_over_time_and_batch() -> None:
    model = Reveal(dn.LockedDropout(0.5)).eval()
    samples = dropkit.mc_predict(model, torch.ones(7, 5, 16), 4, consistent=1)  # (T, L, N, F)
    assert all(torch.equal(samples[t, i, n], samples[t, 0, 0])
               for t in range(4) for i in range(7) for n in range(5))


def test_sites_that_share_their_draw_themselves_run_in_training() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(dn.DropConnectLinear(8, 8, p=0.5), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(10, 8)
    a = dropkit.mc_predict(model, x, 4, consistent=5)
    b = dropkit.mc_predict(model, x[:4], 4, consistent=5)
    assert torch.allclose(a[:, :4], b) and not torch.equal(a[0], a[1])
    assert model[0].generator is None  # the module's own generator is given back


def test_a_model_with_bn_keeps_its_statistics() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5),
                          nn.Linear(8, 2)).eval()
    stats = {k: v.clone() for k, v in model[1].state_dict().items()}
    dropkit.mc_predict(model, torch.randn(6, 4), 3, consistent=True)
    assert all(torch.equal(v, model[1].state_dict()[k]) for k, v in stats.items())


def test_sites_that_cannot_share_are_refused_by_name() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Dropout(0.5),
                          dn.DropBlock2d(0.2, 3)).eval()
    with pytest.raises(ValueError, match=r"module site '2' \(DropBlock2d\) cannot"):
        dropkit.mc_predict(model, torch.randn(2, 1, 6, 6), 3, consistent=1)
    with pytest.raises(ValueError, match="consistent sampling runs one network per pass"):
        dropkit.mc_predict(nn.Sequential(nn.Dropout(0.5)), torch.ones(2, 3), 3,
                           consistent=1, strategy="vmap")


def test_a_transformers_model_is_refused_with_its_attention_named() -> None:
    pytest.importorskip("transformers")
    from foreign import bert, text_batch

    with pytest.raises(ValueError, match="bert.encoder.layer.0.attention.self"):
        dropkit.mc_predict(bert(attention=0.1), text_batch(), 3, consistent=1)
