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
    # refused before the draw context, now shared by construction
    "DropBlock2d": (lambda: dn.DropBlock2d(0.3, 3), (12, 2, 8, 8)),
    "DropBlock3d": (lambda: dn.DropBlock3d(0.3, 2), (12, 2, 4, 4, 4)),
    "ConcreteDropout": (lambda: dn.ConcreteDropout(p=0.3), (12, 16)),
    "dropkit Dropout, seeded backend": (lambda: dn.Dropout(0.5, backend="seeded"), (12, 16)),
    "LockedDropout batch first": (lambda: dn.LockedDropout(0.5, batch_first=True), (12, 5, 8)),
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


def test_alpha_dropout_at_rate_one_gives_zeros_as_torch_does() -> None:
    """The per-variant table guarded only p = 0 and divided by zero at p = 1."""

    class Beside(nn.Module):
        def __init__(self, alpha: nn.Module) -> None:
            super().__init__()
            self.alpha, self.drop = alpha, nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.alpha(x), self.drop(x)], dim=1)

    for alpha in (nn.AlphaDropout(1.0), dn.AlphaDropout(1.0), dn.FeatureAlphaDropout(1.0)):
        samples = dropkit.mc_predict(Beside(alpha).eval(), torch.ones(4, 3, 5), 3,
                                     consistent=2)
        assert torch.equal(samples[:, :, :3], torch.zeros(3, 4, 3, 5)), alpha
        assert samples.isfinite().all()


def test_variational_rnn_and_embedding_dropout_share_their_masks() -> None:
    torch.manual_seed(0)
    rnn = dn.VariationalLSTM(6, 8, dropout=0.3, recurrent_dropout=0.3, output_dropout=0.3,
                             tied=False).eval()

    class Last(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = dn.EmbeddingDropout(nn.Embedding(20, 6), 0.3)
            self.rnn = rnn

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.rnn(self.emb(tokens).transpose(0, 1))[0][-1]  # (N, H)

    model = Last().eval()
    tokens = torch.randint(0, 20, (3, 7))
    repeated = tokens.repeat(4, 1)  # the same 3 sequences, 4 times
    a = dropkit.mc_predict(model, repeated, 5, consistent=4)
    assert all(torch.allclose(a[:, i], a[:, i % 3], rtol=1e-5, atol=1e-6) for i in range(12))
    assert not torch.allclose(a[0], a[1])
    b = dropkit.mc_predict(model, tokens, 5, consistent=4)  # another batch size
    assert torch.allclose(a[:, :3], b, rtol=1e-5, atol=1e-6)


def test_layer_drop_skips_the_same_blocks_for_every_input() -> None:
    blocks = dn.LayerDrop([nn.Linear(4, 4) for _ in range(6)], p=0.5)

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = blocks

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.blocks(x)

    torch.manual_seed(0)
    model = nn.Sequential(Residual(), nn.Dropout(0.1)).eval()
    x = torch.randn(3, 4)
    a = dropkit.mc_predict(model, x.repeat(2, 1), 6, consistent=1)
    b = dropkit.mc_predict(model, x, 6, consistent=1)
    assert torch.allclose(a[:, :3], b) and torch.allclose(a[:, 3:], b)


def test_sites_that_cannot_share_are_refused_by_name() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.dropout(self.inner(x), 0.3, self.training)

    model = nn.Sequential(nn.Dropout(0.5), Functional()).eval()
    with pytest.raises(ValueError, match=r"functional site '1:dropout' \(Functional\) cannot"):
        dropkit.mc_predict(model, torch.randn(2, 4), 3, consistent=1)
    gru = nn.GRU(4, 4, num_layers=2, dropout=0.3)
    with pytest.raises(ValueError, match=r"GRU"):
        dropkit.mc_predict(gru, torch.randn(5, 2, 4), 3, consistent=1, output=lambda o: o[0])
    with pytest.raises(ValueError, match="consistent sampling runs one network per pass"):
        dropkit.mc_predict(nn.Sequential(nn.Dropout(0.5)), torch.ones(2, 3), 3,
                           consistent=1, strategy="vmap")


def test_a_transformers_model_is_refused_with_its_attention_named() -> None:
    pytest.importorskip("transformers")
    from foreign import bert, text_batch

    with pytest.raises(ValueError, match="bert.encoder.layer.0.attention.self"):
        dropkit.mc_predict(bert(attention=0.1), text_batch(), 3, consistent=1)


def test_a_draw_outside_the_primitive_is_observed_not_assumed() -> None:
    """A subclass of a dropkit module that draws by itself passes the sites' check (it is
    a dropkit class); the first call observes that its draws are per input."""

    class OwnDraws(dn.Dropout):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training:
                return x
            return x * (torch.rand_like(x) > self.p) / (1 - self.p)

    model = Reveal(OwnDraws(0.5)).eval()
    with pytest.raises(ValueError, match="consistent sampling was observed to draw per input"):
        dropkit.mc_predict(model, torch.ones(6, 8), 3, consistent=1)


def test_a_copy_of_timm_s_drop_path_is_refused_by_name() -> None:
    """A foreign DropPath class draws its own coin, outside dropkit's primitive: consistent
    sampling would silently draw per input there."""
    from foreign import timm_model, tokens

    model = timm_model(attn_drop=0.0, proj_drop=0.0, drop_path=0.3)
    with pytest.raises(ValueError, match=r"\(DropPath\) cannot"):
        dropkit.mc_predict(model, tokens(), 3, consistent=1)
