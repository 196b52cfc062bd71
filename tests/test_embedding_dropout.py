import copy

import pytest
import torch

import dropkit.functional as F
import dropkit.nn as dn
from conftest import assert_binomial, gen


def _awd_lstm_reference(ids, weight, p, generator):
    """AWD-LSTM's embedded_dropout: mask the whole (V, D) weight with a (V, 1) mask."""
    mask = torch.empty_like(weight[:, :1]).bernoulli_(1 - p, generator=generator) / (1 - p)
    return torch.nn.functional.embedding(ids, weight * mask)


class TestEmbeddingDropout:
    def test_every_occurrence_of_a_dropped_id_is_zero(self) -> None:
        ids = torch.randint(0, 50, (64, 20), generator=gen(1))
        out = F.embedding_dropout(ids, torch.randn(50, 8).abs() + 0.1, 0.3, generator=gen(2))
        zero = (out == 0).all(-1)  # (64, 20): a token's whole vector drops or none of it
        assert (zero | (out != 0).all(-1)).all()
        dropped_ids = set(ids[zero].tolist())
        kept_ids = set(ids[~zero].tolist())
        assert dropped_ids and not dropped_ids & kept_ids

    def test_equals_awd_lstm_formulation(self) -> None:
        ids = torch.randint(0, 30, (5, 7), generator=gen(3))
        w = torch.randn(30, 6, dtype=torch.float64, requires_grad=True)
        ours = F.embedding_dropout(ids, w, 0.4, generator=gen(4))
        theirs = _awd_lstm_reference(ids, w, 0.4, gen(4))
        torch.testing.assert_close(ours, theirs)
        (g_ours,) = torch.autograd.grad(ours.sum(), w)
        (g_theirs,) = torch.autograd.grad(theirs.sum(), w)
        torch.testing.assert_close(g_ours, g_theirs)

    def test_word_drop_rate_within_binomial_bound(self) -> None:
        v = 20_000
        ids = torch.arange(v)
        out = F.embedding_dropout(ids, torch.ones(v, 2), 0.25, generator=gen())
        assert_binomial(int((out[:, 0] == 0).sum()), v, 0.25)

    def test_empty_ids(self) -> None:
        out = F.embedding_dropout(torch.empty(0, 3, dtype=torch.long), torch.ones(5, 4), 0.5)
        assert out.shape == (0, 3, 4)

    def test_float_ids_are_rejected(self) -> None:
        with pytest.raises(TypeError, match=r"^embedding_dropout: expected integer ids"):
            F.embedding_dropout(torch.ones(3), torch.ones(5, 4), 0.5)

    def test_weight_must_be_2d(self) -> None:
        with pytest.raises(ValueError, match=r"^embedding_dropout: expected a 2D"):
            F.embedding_dropout(torch.ones(3, dtype=torch.long), torch.ones(5), 0.5)


class TestEmbeddingDropoutModule:
    def test_wraps_an_embedding_and_keeps_its_options(self) -> None:
        emb = torch.nn.Embedding(10, 4, padding_idx=0)
        m = dn.EmbeddingDropout(emb, 0.5, generator=gen(1))
        ids = torch.tensor([[0, 1, 2, 0]])
        out = m(ids)
        assert (out[0, 0] == 0).all()
        m.eval()
        assert torch.equal(m(ids), emb(ids))
        assert repr(m).startswith("EmbeddingDropout(\n  p=0.5")
        assert set(m.state_dict()) == {"embedding.weight"}

    def test_deepcopy_and_state_dict(self) -> None:
        m = dn.EmbeddingDropout(torch.nn.Embedding(10, 4), 0.5, generator=gen(2))
        clone = copy.deepcopy(m)
        ids = torch.tensor([[1, 2, 3]])
        assert torch.equal(m(ids), clone(ids))
        fresh = dn.EmbeddingDropout(torch.nn.Embedding(10, 4), 0.5)
        fresh.load_state_dict(m.state_dict())
        fresh.eval()
        m.eval()
        assert torch.equal(fresh(ids), m(ids))

    def test_rejects_a_non_embedding(self) -> None:
        with pytest.raises(TypeError, match=r"^EmbeddingDropout: expected an nn.Embedding"):
            dn.EmbeddingDropout(torch.nn.Linear(2, 2), 0.1)

    def test_compiles_fullgraph(self) -> None:
        m = dn.EmbeddingDropout(torch.nn.Embedding(10, 4), 0.5)
        out = torch.compile(m, fullgraph=True, backend="aot_eager")(torch.tensor([[1, 2]]))
        assert out.shape == (1, 2, 4)
