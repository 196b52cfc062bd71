import warnings

import pytest
import torch
from torch import nn

import dropkit
import dropkit.nn as dn


def _codes(model: nn.Module, x: torch.Tensor) -> set[tuple[str, str]]:
    return {(f.code, f.module) for f in dropkit.diagnose(model, x)}


def _cnn(drop_before_bn: bool) -> nn.Module:
    drop = dn.Dropout2d(0.3)
    body = [nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()]
    if drop_before_bn:
        body += [drop, nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU()]
    else:
        body += [nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), drop]
    return nn.Sequential(*body, nn.Flatten(), nn.Linear(8 * 4 * 4, 10))


class Residual(nn.Module):
    """Dropout on a skip branch that joins the trunk before a BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 6)
        self.drop = nn.Dropout(0.5)
        self.bn = nn.BatchNorm1d(6)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        return self.head(self.bn(h + self.drop(h)))


X_IMG = torch.randn(4, 3, 8, 8)


class TestDiagnose:
    def test_dropout_before_batchnorm(self) -> None:
        codes = _codes(_cnn(True), X_IMG)
        assert ("dropout-before-batchnorm", "3") in codes
        assert not any(c == "dropout-before-batchnorm" for c, _ in _codes(_cnn(False), X_IMG))

    def test_dropout_before_batchnorm_through_a_skip_connection(self) -> None:
        codes = _codes(Residual(), torch.randn(5, 6))
        assert ("dropout-before-batchnorm", "drop") in codes

    def test_dropout_on_output(self) -> None:
        bad = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2), nn.Dropout(0.5))
        good = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 2))
        assert ("dropout-on-output", "3") in _codes(bad, torch.randn(2, 4))
        assert not any(c == "dropout-on-output" for c, _ in _codes(good, torch.randn(2, 4)))

    def test_high_rate_and_inactive(self) -> None:
        m = nn.Sequential(nn.Linear(4, 4), dn.Dropout(0.8), nn.Linear(4, 4), nn.Dropout(0.0),
                          nn.Linear(4, 4), nn.Dropout(0.79), nn.Linear(4, 2))
        codes = _codes(m, torch.randn(2, 4))
        assert ("high-rate", "1") in codes and ("inactive-dropout", "3") in codes
        assert not any(name == "5" for _, name in codes)

    def test_lstm_dropout_single_layer(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns about it too
            single = nn.LSTM(4, 4, num_layers=1, dropout=0.3)
        stacked = nn.LSTM(4, 4, num_layers=2, dropout=0.3)
        x = torch.randn(3, 2, 4)
        assert ("lstm-dropout-single-layer", "") in _codes(single, x)
        assert not _codes(stacked, x)

    def test_clean_model_has_no_findings(self) -> None:
        assert dropkit.diagnose(_cnn(False), X_IMG) == []

    def test_messages_say_why_and_what_to_do(self) -> None:
        (finding,) = [f for f in dropkit.diagnose(_cnn(True), X_IMG)]
        assert "Li et al. 2019" in finding.message and "Move dropout" in finding.message

    @pytest.mark.parametrize("train", [True, False])
    def test_leaves_modes_buffers_and_rng_as_they_were(self, train: bool) -> None:
        m = _cnn(True).train(train)
        m[1].training = not train  # a mixed state must come back too
        modes = [mod.training for mod in m.modules()]
        buffers = {k: v.clone() for k, v in m.state_dict().items()}
        torch.manual_seed(0)
        expected_next = torch.rand(3)
        torch.manual_seed(0)
        dropkit.diagnose(m, X_IMG)
        assert torch.equal(torch.rand(3), expected_next)
        assert [mod.training for mod in m.modules()] == modes
        for k, v in m.state_dict().items():
            assert torch.equal(v, buffers[k]), k

    def test_modes_restored_after_an_exception(self) -> None:
        m = _cnn(True).train()
        with pytest.raises(RuntimeError):
            dropkit.diagnose(m, torch.randn(4, 5, 8, 8))  # wrong channel count
        assert all(mod.training for mod in m.modules())


class TestVarianceShift:
    # the batch BatchNorm's running statistics are trained on, and measured on: fixed, so
    # that the clean model's ratio does not depend on how far a new batch lies from them
    BATCH = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def _trained(self, drop_before_bn: bool) -> nn.Module:
        torch.manual_seed(0)
        m = _cnn(drop_before_bn).train()
        with torch.no_grad():
            for _ in range(100):  # running statistics = the batch's, but for 0.9^100
                m(self.BATCH)
        return m

    def test_ratio_far_below_one_after_dropout_and_one_elsewhere(self) -> None:
        x = self.BATCH
        shift = dropkit.variance_shift(self._trained(True), x)
        assert shift["1"] == pytest.approx(1.0)  # nothing stochastic before the first BN
        assert shift["5"] < 0.8
        clean = dropkit.variance_shift(self._trained(False), x)
        # its BatchNorms: "1" and "4"; off 1 by the running variance's unbiased estimate
        # (n / (n - 1), n = 64 x 6 x 6) and 0.9^100 of the defaults
        assert clean["4"] == pytest.approx(1.0, abs=0.01)

    def test_equals_a_direct_measurement(self) -> None:
        m = self._trained(True)
        x = torch.randn(64, 3, 8, 8)
        torch.manual_seed(1)  # the same dropout masks for the function and the test
        shift = dropkit.variance_shift(m, x)
        seen = {}
        hook = m[5].register_forward_pre_hook(lambda mod, a: seen.__setitem__(mod.training, a[0]))
        state = {k: v.clone() for k, v in m.state_dict().items()}
        with torch.no_grad():
            torch.manual_seed(1)
            m.eval()(x)
            m.train()(x)
        hook.remove()
        m.load_state_dict(state)
        ratio = (seen[False].double().var(dim=(0, 2, 3)) / seen[True].double().var(dim=(0, 2, 3)))
        assert shift["5"] == pytest.approx(ratio.mean().item(), rel=1e-9)

    def test_model_untouched(self) -> None:
        m = self._trained(True).eval()
        state = {k: v.clone() for k, v in m.state_dict().items()}
        dropkit.variance_shift(m, torch.randn(16, 3, 8, 8))
        assert not m.training
        assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())

    def test_needs_batchnorm(self) -> None:
        with pytest.raises(ValueError, match="no BatchNorm"):
            dropkit.variance_shift(nn.Linear(2, 2), torch.randn(3, 2))


class TestInferenceGuard:
    def test_raises_when_dropout_samples(self) -> None:
        m = nn.Sequential(nn.Linear(3, 3), dn.Dropout(0.5), nn.Dropout(0.2))
        with pytest.raises(RuntimeError, match=r"dropout '1' \(Dropout\) sampled during inference"):
            with dropkit.inference_guard(m):
                m(torch.randn(2, 3))

    def test_silent_in_eval_and_hooks_removed(self) -> None:
        m = nn.Sequential(nn.Linear(3, 3), dn.Dropout(0.5)).eval()
        with dropkit.inference_guard(m):
            m(torch.randn(2, 3))
        m.train()
        m(torch.randn(2, 3))  # outside the guard: no error

    def test_warns_once(self) -> None:
        m = nn.Sequential(nn.Dropout(0.5), nn.Dropout(0.5))
        with pytest.warns(RuntimeWarning, match=r"call model.eval\(\)") as record:
            with dropkit.inference_guard(m, action="warn"):
                m(torch.randn(2, 3))
                m(torch.randn(2, 3))
        assert len(record) == 1

    def test_stacked_lstm_dropout_counts(self) -> None:
        lstm = nn.LSTM(3, 3, num_layers=2, dropout=0.5)
        with pytest.raises(RuntimeError, match="sampled during inference"):
            with dropkit.inference_guard(lstm):
                lstm(torch.randn(2, 1, 3))

    def test_bad_action(self) -> None:
        with pytest.raises(ValueError, match="expected `action`"):
            with dropkit.inference_guard(nn.Linear(2, 2), action="ignore"):
                pass


# -- functional and attention dropout, stochastic modules, foreign models -------------

from foreign import FunctionalDropout, bert, llama, text_batch, timm_model, tokens  # noqa: E402


class FunctionalBeforeBN(nn.Module):
    """Functional dropout, gated correctly, feeding a BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.dropout = 0.3
        self.bn = nn.BatchNorm1d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.dropout(self.fc(x), self.dropout, self.training)
        return self.bn(h)


class FusedAlwaysOn(nn.Module):
    """Attention that passes its rate to SDPA whatever its mode."""

    def __init__(self) -> None:
        super().__init__()
        self.attention_dropout = 0.4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.scaled_dot_product_attention(
            x, x, x, dropout_p=self.attention_dropout)


class TestFunctionalSites:
    def test_functional_dropout_always_on(self) -> None:
        m = nn.Sequential(nn.Linear(6, 6), FunctionalDropout(6, 0.2, gated=False)).eval()
        (finding,) = [f for f in dropkit.diagnose(m, torch.randn(4, 6))
                      if f.code == "functional-dropout-always-on"]
        assert finding.module == "1"
        assert ("dropout with p=0.2 in the code of module '1' (FunctionalDropout, "
                in finding.message)
        assert "foreign.py:" in finding.message  # the line that calls it
        assert "training=self.training" in finding.message

    def test_gated_functional_dropout_is_not_always_on(self) -> None:
        m = nn.Sequential(nn.Linear(6, 6), FunctionalBeforeBN()).eval()
        assert ("dropout-before-batchnorm", "1.dropout") in _codes(m, torch.randn(4, 6))
        assert not any(c == "functional-dropout-always-on" for c, _ in
                       _codes(m, torch.randn(4, 6)))

    def test_high_rate_on_an_attention_attribute(self) -> None:
        found = _codes(llama(attention=0.9), text_batch()["input_ids"])
        assert ("high-rate", "model.layers.0.self_attn.attention_dropout") in found

    def test_sdpa_always_on_and_on_a_timm_block(self) -> None:
        found = _codes(nn.Sequential(FusedAlwaysOn()).eval(), torch.randn(2, 2, 3, 4))
        assert ("functional-dropout-always-on", "0") in found
        assert not any(c == "functional-dropout-always-on" for c, _ in
                       _codes(timm_model(), tokens()))

    def test_leaves_a_gaussian_noise_generator_as_it_was(self) -> None:
        # regression: only dropout modules' generators were restored before
        g = torch.Generator().manual_seed(5)
        m = nn.Sequential(nn.Linear(6, 6), dn.GaussianNoise(0.5, generator=g), nn.Dropout(0.1))
        before = g.get_state()
        dropkit.diagnose(m, torch.randn(4, 6))
        assert torch.equal(g.get_state(), before)


class TestInferenceGuardBeyondModules:
    def test_gaussian_noise_in_training_is_caught(self) -> None:
        # regression: GaussianNoise sampled silently inside the guard before
        m = nn.Sequential(nn.Linear(3, 3), dn.GaussianNoise(0.1))
        with pytest.raises(RuntimeError, match=r"dropout '1' \(GaussianNoise\) sampled"):
            with dropkit.inference_guard(m):
                m(torch.randn(2, 3))

    def test_functional_dropout_without_training_flag(self) -> None:
        m = nn.Sequential(nn.Linear(6, 6), FunctionalDropout(6, 0.2, gated=False)).eval()
        with pytest.raises(RuntimeError, match=r"^inference_guard: dropout \(p=0.2\) sampled "
                                               r"during inference in the code of module '1' "
                                               r"\(FunctionalDropout, .*foreign.py:\d+\) "
                                               r"although that module is in eval"):
            with dropkit.inference_guard(m):
                m(torch.randn(2, 6))

    def test_sdpa_dropout_in_eval(self) -> None:
        m = nn.Sequential(FusedAlwaysOn()).eval()
        with pytest.raises(RuntimeError, match=r"scaled_dot_product_attention \(p=0.4\) "
                                               r"sampled during inference in the code of "
                                               r"module '0' \(FusedAlwaysOn"):
            with dropkit.inference_guard(m):
                m(torch.randn(2, 2, 3, 4))

    def test_hf_attention_left_in_training(self) -> None:
        m = bert("sdpa").eval()
        m.bert.encoder.layer[1].attention.self.train()  # its child dropout stays in eval
        with pytest.raises(RuntimeError, match=r"scaled_dot_product_attention \(p=0.5\) "
                                               r"sampled during inference in the code of "
                                               r"module 'bert.encoder.layer.1.attention.self'"
                                               r" \(BertSelfAttention\) because that module "
                                               r"is in training mode"):
            with dropkit.inference_guard(m):
                m(**text_batch())

    def test_silent_on_a_clean_hf_model_and_outputs_unchanged(self) -> None:
        m, x = bert("eager"), text_batch()
        expected = m(**x).logits
        with dropkit.inference_guard(m):
            assert torch.equal(m(**x).logits, expected)
