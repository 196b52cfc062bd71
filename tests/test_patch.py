import pytest
import torch
from torch import nn

import dropkit
import dropkit.nn as dn
from dropkit.tools.patch import is_patched


def _model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5),
                      dn.DropConnectLinear(16, 4, p=0.3))
    return m.eval()


class TestPatch:
    def test_eval_stays_stochastic_and_batchnorm_stays_in_eval(self) -> None:
        m = _model()
        state = {k: v.clone() for k, v in m.state_dict().items()}
        dropkit.patch(m)
        x = torch.randn(8, 6)
        assert not torch.equal(m(x), m(x))
        assert not m.training and not m[1].training and not m[3].training
        for k, v in m.state_dict().items():
            assert torch.equal(v, state[k]), k

    def test_unpatch_restores_exactly(self) -> None:
        m = _model()
        hooks = [(dict(x._forward_hooks), dict(x._forward_pre_hooks)) for x in m.modules()]
        dropkit.unpatch(dropkit.patch(m))
        x = torch.randn(8, 6)
        assert torch.equal(m(x), m(x))
        assert [(dict(x._forward_hooks), dict(x._forward_pre_hooks)) for x in m.modules()] == hooks
        assert not any(k.startswith("_dropkit") for x in m.modules() for k in x.__dict__)

    def test_patch_keeps_training_mode_in_training(self) -> None:
        m = dropkit.patch(_model().train())
        m(torch.randn(8, 6))
        assert m.training and m[3].training

    def test_not_inplace_returns_a_patched_copy(self) -> None:
        m = _model()
        patched = dropkit.patch(m, inplace=False)
        x = torch.randn(8, 6)
        assert torch.equal(m(x), m(x))
        assert not torch.equal(patched(x), patched(x))

    def test_patching_twice_is_patching_once(self) -> None:
        m = dropkit.patch(_model())
        with pytest.warns(UserWarning, match="no dropout site to patch"):
            dropkit.patch(m)  # nothing new to patch
        assert len(m[3]._forward_pre_hooks) == 1

    def test_warns_when_nothing_to_do(self) -> None:
        with pytest.warns(UserWarning, match="patch: no dropout site to patch"):
            dropkit.patch(nn.Linear(2, 2))
        with pytest.warns(UserWarning, match="unpatch: no patched module"):
            dropkit.unpatch(_model())

    def test_mode_restored_after_an_exception_in_forward(self) -> None:
        m = dropkit.patch(_model())
        with pytest.raises(TypeError):
            m[3]("not a tensor")  # the dropout's own forward raises
        assert not m[3].training


class TestPatchForeign:
    def test_fused_attention_patched_at_the_first_call_and_unpatched_exactly(self) -> None:
        from foreign import timm_model, tokens

        m, x = timm_model(proj_drop=0.0), tokens()
        expected = m(x)
        dropkit.patch(m)  # the attention's own flag gates its fused call: unknown until run
        assert not is_patched(m[1].attn)
        a, b = m(x), m(x)
        assert is_patched(m[1].attn)
        assert not torch.equal(a, b)
        assert not any(t.training for t in m.modules())
        dropkit.unpatch(m)
        assert torch.equal(m(x), expected)

    def test_example_input_patches_at_once(self) -> None:
        from foreign import gpt2, text_batch

        m, x = gpt2(), text_batch()
        dropkit.patch(m, example_input=x)
        assert is_patched(m.transformer.h[0].attn)
        assert not torch.equal(m(**x).logits, m(**x).logits)
        dropkit.unpatch(m)
        assert not is_patched(m.transformer.h[0].attn)
