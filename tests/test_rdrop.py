"""R-Drop: the loss against its formula written out, the two passes' masks differ for
every kind of site (module, functional, attention), gradients flow through both passes,
and bad arguments or a silent pass are refused."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dropkit
import dropkit.nn as dn
from conftest import gen


def _logits(seed: int, shape=(6, 5)) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64)


def _sym_kl_by_hand(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """0.5 * (KL(p_a || p_b) + KL(p_b || p_a)) per row, from the probabilities."""
    pa, pb = a.softmax(-1), b.softmax(-1)
    rows = []
    for i in range(a.shape[0]):
        kl_ab = sum(pa[i, c] * math.log(pa[i, c] / pb[i, c]) for c in range(a.shape[1]))
        kl_ba = sum(pb[i, c] * math.log(pb[i, c] / pa[i, c]) for c in range(a.shape[1]))
        rows.append(0.5 * (kl_ab + kl_ba))
    return torch.tensor(rows, dtype=torch.float64)


class TestLoss:
    def test_against_the_formula_written_out(self) -> None:
        a, b = _logits(0), _logits(1)
        y = torch.tensor([0, 1, 2, 3, 4, 0])
        kl = _sym_kl_by_hand(a, b)
        ce = 0.5 * (F.cross_entropy(a, y) + F.cross_entropy(b, y))
        assert torch.allclose(dropkit.rdrop_loss(a, b, alpha=2.5),
                              2.5 * kl.mean())
        assert torch.allclose(dropkit.rdrop_loss(a, b, y, alpha=2.5), ce + 2.5 * kl.mean())
        summed = 0.5 * (F.cross_entropy(a, y, reduction="sum")
                        + F.cross_entropy(b, y, reduction="sum"))
        assert torch.allclose(dropkit.rdrop_loss(a, b, y, alpha=0.5, reduction="sum"),
                              summed + 0.5 * kl.sum())

    def test_equal_passes_leave_only_the_task_loss(self) -> None:
        a, y = _logits(2), torch.tensor([1, 1, 0, 2, 3, 4])
        assert dropkit.rdrop_loss(a, a.clone(), alpha=3.0).item() == 0.0
        assert torch.allclose(dropkit.rdrop_loss(a, a.clone(), y, alpha=3.0),
                              F.cross_entropy(a, y))

    def test_label_smoothing_acts_on_the_cross_entropy_only(self) -> None:
        a, b, y = _logits(3), _logits(4), torch.tensor([0, 1, 2, 3, 4, 4])
        got = dropkit.rdrop_loss(a, b, y, alpha=1.0, label_smoothing=0.1)
        ce = 0.5 * (F.cross_entropy(a, y, label_smoothing=0.1)
                    + F.cross_entropy(b, y, label_smoothing=0.1))
        assert torch.allclose(got, ce + _sym_kl_by_hand(a, b).mean())

    def test_sequences_with_padding_and_regression(self) -> None:
        a, b = _logits(5, (2, 3, 4)), _logits(6, (2, 3, 4))
        y = torch.randint(0, 4, (2, 3), generator=gen(7))
        pad = torch.tensor([[False, False, True], [False, True, True]])
        keep = ~pad
        kl = _sym_kl_by_hand(a[keep], b[keep])
        ce = 0.5 * (F.cross_entropy(a[keep], y[keep]) + F.cross_entropy(b[keep], y[keep]))
        assert torch.allclose(dropkit.rdrop_loss(a, b, y, pad_mask=pad), ce + kl.mean())
        ra, rb, t = _logits(8, (5,)), _logits(9, (5,)), _logits(10, (5,))
        want = 0.5 * (((ra - t) ** 2).mean() + ((rb - t) ** 2).mean()) \
            + 2.0 * ((ra - rb) ** 2).mean()
        assert torch.allclose(dropkit.rdrop_loss(ra, rb, t, alpha=2.0, task="regression"),
                              want)

    def test_gradients_reach_both_passes(self) -> None:
        a = _logits(11).requires_grad_(True)
        b = _logits(12).requires_grad_(True)
        dropkit.rdrop_loss(a, b, alpha=1.0).backward()
        assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
        a2, b2 = _logits(11).requires_grad_(True), _logits(12).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x, z: dropkit.rdrop_loss(x, z, alpha=1.3),
                                        (a2, b2))

    @pytest.mark.parametrize("call, match", [
        (lambda a: dropkit.rdrop_loss(a, a[:2]), r"^rdrop_loss: expected the two passes' "
                                                 r"outputs to have one shape"),
        (lambda a: dropkit.rdrop_loss(a, a, alpha=-1), r"^rdrop_loss: expected `alpha`"),
        (lambda a: dropkit.rdrop_loss(a, a, task="ranking"), r"^rdrop_loss: expected `task`"),
        (lambda a: dropkit.rdrop_loss(a, a, reduction="none"),
         r"^rdrop_loss: expected `reduction`"),
        (lambda a: dropkit.rdrop_loss(a, a, torch.zeros(3, dtype=torch.long)),
         r"^rdrop_loss: expected `target` of shape \(6,\)"),
        (lambda a: dropkit.rdrop_loss(a, a, pad_mask=torch.zeros(6)),
         r"^rdrop_loss: expected `pad_mask` to be a bool tensor of shape \(6,\)"),
    ])
    def test_bad_arguments_are_one_clear_error(self, call, match) -> None:
        with pytest.raises((ValueError, TypeError), match=match):
            call(_logits(0))


class Functional(nn.Module):
    """Dropout written as a functional call in the model's code."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.fc(x), 0.5, self.training)


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "dropkit module": nn.Sequential(nn.Linear(8, 8), dn.Dropout(0.5), nn.Linear(8, 3)),
        "torch module": nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 3)),
        "functional": nn.Sequential(Functional(), nn.Linear(8, 3)),
    }


class TestForward:
    @pytest.mark.parametrize("strategy", ["batch", "vmap", "loop"])
    @pytest.mark.parametrize("kind", ["dropkit module", "torch module", "functional"])
    def test_two_passes_draw_two_masks_and_gradients_flow(self, kind, strategy) -> None:
        model = _models()[kind].train()
        x = torch.randn(5, 8, generator=gen(1))
        a, b = dropkit.rdrop_forward(model, x, strategy=strategy)
        assert a.shape == b.shape == (5, 3) and not torch.equal(a, b)
        loss = dropkit.rdrop_loss(a, b, torch.tensor([0, 1, 2, 0, 1]), alpha=1.0)
        loss.backward()
        first = next(model.parameters())
        assert first.grad is not None and first.grad.abs().sum() > 0

    @pytest.mark.parametrize("strategy", ["batch", "vmap", "loop"])
    def test_a_generator_makes_the_passes_reproducible(self, strategy) -> None:
        model = _models()["torch module"].train()
        x = torch.randn(5, 8, generator=gen(1))
        before = torch.get_rng_state()
        a = dropkit.rdrop_forward(model, x, strategy=strategy, generator=gen(3))
        b = dropkit.rdrop_forward(model, x, strategy=strategy, generator=gen(3))
        c = dropkit.rdrop_forward(model, x, strategy=strategy, generator=gen(4))
        assert torch.equal(torch.get_rng_state(), before)  # the global stream untouched
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[0], c[0])

    @pytest.mark.parametrize("strategy", ["batch", "vmap", "loop"])
    def test_two_passes_agree_with_two_plain_passes_in_distribution(self, strategy) -> None:
        # with a model whose output is its mask, each pass keeps each unit with 1 - p
        model = nn.Sequential(dn.Dropout(0.3)).train()
        x = torch.ones(400, 50)
        a, b = dropkit.rdrop_forward(model, x, strategy=strategy)
        from conftest import assert_binomial

        for out in (a, b):
            assert_binomial(int((out != 0).sum()), out.numel(), 0.7)
        assert_binomial(int(((a != 0) & (b != 0)).sum()), a.numel(), 0.49)  # independent

    def test_attention_dropout_of_a_transformers_model(self) -> None:
        pytest.importorskip("transformers")
        from foreign import bert, text_batch

        model = bert(attention=0.5, hidden=0.0).train()  # dropout in SDPA only
        a, b = dropkit.rdrop_forward(model, text_batch(), strategy="batch")
        assert not torch.equal(a, b)  # two attention masks
        (a.sum() - b.sum()).backward()

    def test_refusals(self) -> None:
        model = _models()["dropkit module"]
        x = torch.randn(3, 8)
        with pytest.raises(ValueError, match="the model is in eval mode"):
            dropkit.rdrop_forward(model.eval(), x)
        with pytest.raises(ValueError, match="has no dropout that draws"):
            dropkit.rdrop_forward(nn.Linear(8, 2).train(), x)
        shared = nn.Sequential(dn.DropConnectLinear(8, 3, p=0.5)).train()
        with pytest.raises(ValueError, match=r"strategy 'batch' cannot draw two masks for "
                                             r"module site '0'"):
            dropkit.rdrop_forward(shared, x)
        a, b = dropkit.rdrop_forward(shared, x, strategy="loop")  # one weight mask per pass
        assert not torch.equal(a, b)
        blind = nn.Sequential(dn.Dropout(0.5), nn.Linear(8, 2))
        with torch.no_grad():
            blind[1].weight.zero_()  # the output never sees the mask
        with pytest.raises(RuntimeError, match="the two passes are identical"):
            dropkit.rdrop_forward(blind.train(), x)
        with pytest.raises(ValueError, match="expected `strategy` to be one of"):
            dropkit.rdrop_forward(model.train(), x, strategy="twice")


class TestVmapRefusals:
    """An explicit 'vmap' that torch cannot batch is an error naming the module."""

    @staticmethod
    def _coin_model() -> nn.Module:
        class Coin(nn.Module):  # fairseq's LayerDrop: a branch on one coin per batch
            def __init__(self) -> None:
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.drop = dn.Dropout(0.5)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                if self.training and torch.rand(()) < 0.5:
                    return x
                return self.drop(self.fc(x))

        return nn.Sequential(nn.Linear(4, 4), Coin())

    def test_rdrop_forward(self) -> None:
        m = self._coin_model().train()
        with pytest.raises(RuntimeError, match=r"^rdrop_forward: strategy 'vmap' cannot draw "
                                               r"two masks for module '1' \(Coin\): .*"
                                               r"data-dependent control flow"):
            dropkit.rdrop_forward(m, torch.randn(3, 4), strategy="vmap")

    def test_mc_predict(self) -> None:
        m = self._coin_model().eval()
        with pytest.raises(RuntimeError, match=r"^mc_predict: strategy 'vmap' cannot sample "
                                               r"module '1' \(Coin\)"):
            dropkit.mc_predict(m, torch.randn(3, 4), 4, strategy="vmap")
