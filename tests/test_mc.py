"""Monte Carlo dropout: correct by construction (BatchNorm untouched), vectorized."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import dropkit
import dropkit.nn as dn
from conftest import gen

STRATEGIES = ["vmap", "batch", "loop", "auto"]


class Residual(nn.Module):
    """A skip connection that adds a pre-dropout tensor to a post-dropout one."""

    def __init__(self, width: int, drop: nn.Module) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(torch.relu(self.fc(x)))


def bn_model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(),
        Residual(16, nn.Dropout(0.3)),
        dn.Dropout(0.5), nn.Linear(16, 3),
    )
    m.train()
    with torch.no_grad():
        for _ in range(3):  # running statistics away from their defaults
            m(torch.randn(32, 10))
    return m


def _snapshot(m: nn.Module) -> tuple[list[bool], dict[str, torch.Tensor]]:
    return [x.training for x in m.modules()], {k: v.clone() for k, v in m.state_dict().items()}


class TestMcMode:
    @pytest.mark.parametrize("start", ["train", "eval", "mixed"])
    def test_only_sampling_modules_train_and_modes_come_back(self, start: str) -> None:
        m = bn_model().train(start != "eval")
        if start == "mixed":
            m[3].drop.eval()
        modes, _ = _snapshot(m)
        with dropkit.mc_mode(m):
            assert m[3].drop.training and m[4].training
            assert not m[1].training and not m.training
        assert [x.training for x in m.modules()] == modes

    def test_modes_restored_after_an_exception(self) -> None:
        m = bn_model().eval()
        with pytest.raises(KeyError):
            with dropkit.mc_mode(m):
                raise KeyError("boom")
        assert not any(x.training for x in m.modules())

    def test_wrapped_layer_stays_in_eval(self) -> None:
        m = dn.DropConnect(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), 0.5,
                           params=("0.weight",)).eval()
        with dropkit.mc_mode(m):
            assert m.training and not m.module[1].training


@pytest.mark.parametrize("strategy", STRATEGIES)
class TestMcPredict:
    @pytest.mark.parametrize("start_train", [True, False])
    def test_model_untouched(self, strategy: str, start_train: bool) -> None:
        m = bn_model().train(start_train)
        modes, state = _snapshot(m)
        x = torch.randn(8, 10)
        out = dropkit.mc_predict(m, x, 6, strategy=strategy)
        assert out.shape == (6, 8, 3)
        assert not torch.equal(out[0], out[1])
        assert [x.training for x in m.modules()] == modes
        for k, v in m.state_dict().items():
            assert torch.equal(v, state[k]), k

    def test_mean_converges_to_eval_output(self, strategy: str) -> None:
        # Dropout feeds a linear layer directly: E[output] is exactly the eval output.
        torch.manual_seed(1)
        m = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 2))
        x = torch.randn(4, 5)
        t = 4000
        samples = dropkit.mc_predict(m, x, t, strategy=strategy, chunk_size=1000)
        expected = m.eval()(x).detach()
        se = samples.std(0) / t**0.5
        # 5 sigma per element; a Bonferroni factor for the 8 elements keeps a miss rare
        assert ((samples.mean(0) - expected).abs() <= 5 * se).all()

    def test_skip_connection_across_dropout(self, strategy: str) -> None:
        torch.manual_seed(2)
        m = nn.Sequential(nn.Linear(6, 8), Residual(8, dn.Dropout(0.4)))
        x = torch.randn(3, 6)
        t = 3000
        samples = dropkit.mc_predict(m, x, t, strategy=strategy)
        expected = m.eval()(x).detach()
        se = samples.std(0) / t**0.5
        assert ((samples.mean(0) - expected).abs() <= 5 * se + 1e-6).all()

    @pytest.mark.parametrize(
        "make, shape",
        [
            (lambda: nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)), (3, 4)),
            (lambda: nn.Sequential(nn.Conv1d(2, 4, 3), dn.Dropout1d(0.5)), (3, 2, 9)),
            (lambda: nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Dropout2d(0.5)),
             (3, 2, 6, 6)),
            (lambda: nn.Sequential(nn.Conv3d(2, 4, 3), dn.Dropout3d(0.5)), (2, 2, 5, 5, 5)),
        ],
        ids=["2d", "3d", "4d", "5d"],
    )
    def test_any_input_rank(self, strategy: str, make, shape) -> None:
        m = make().eval()
        x = torch.randn(shape)
        out = dropkit.mc_predict(m, x, 5, strategy=strategy)
        assert out.shape == (5, *m(x).shape)
        assert not torch.equal(out[0], out[1])

    def test_chunks(self, strategy: str) -> None:
        out = dropkit.mc_predict(bn_model(), torch.randn(4, 10), 7, strategy=strategy,
                                 chunk_size=3)
        assert out.shape == (7, 4, 3)
        assert not torch.equal(out[5], out[6])


def _dropkit_models() -> list[tuple[str, nn.Module, torch.Tensor]]:
    # Sizes make two equal samples (a 2**-k event for k independent p=0.5 draws) negligible.
    img = torch.randn(4, 8, 6, 6)  # 32 channels
    vec = torch.randn(8, 8)
    return [
        ("Dropout", nn.Sequential(nn.Linear(8, 8), dn.Dropout(0.5)), vec),
        ("Dropout2d", nn.Sequential(nn.Conv2d(8, 8, 1), dn.Dropout2d(0.5)), img),
        ("AlphaDropout", nn.Sequential(nn.Linear(8, 8), dn.AlphaDropout(0.5)), vec),
        ("FeatureAlphaDropout",
         nn.Sequential(nn.Conv2d(8, 8, 1), dn.FeatureAlphaDropout(0.5)), img),
        ("GaussianDropout", nn.Sequential(nn.Linear(8, 8), dn.GaussianDropout(0.5)), vec),
        ("GaussianNoise", nn.Sequential(nn.Linear(8, 8), dn.GaussianNoise(0.5)), vec),
        ("LockedDropout",
         nn.Sequential(nn.Linear(8, 8), dn.LockedDropout(0.5, batch_first=True)),
         torch.randn(4, 5, 8)),
        ("DropPath", Residual(8, dn.DropPath(0.5)), torch.randn(64, 8)),
        ("DropBlock2d", nn.Sequential(nn.Conv2d(8, 8, 1), dn.DropBlock2d(0.5, 2)), img),
        ("DropConnect", nn.Sequential(dn.DropConnect(nn.Linear(8, 8), 0.5)), vec),
        ("DropConnectLinear", nn.Sequential(dn.DropConnectLinear(8, 8, p=0.5)), vec),
        ("EmbeddingDropout", dn.EmbeddingDropout(nn.Embedding(64, 4), 0.5),
         torch.arange(64).reshape(2, 32)),
        ("ConcreteDropout", nn.Sequential(dn.ConcreteDropout(nn.Linear(8, 8), p=0.5)), vec),
    ]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(
    "name, model, x", _dropkit_models(), ids=[n for n, *_ in _dropkit_models()]
)
def test_dropkit_modules_sample_under_every_strategy(strategy, name, model, x) -> None:
    torch.manual_seed(0)
    model.eval()
    shared = any(getattr(m, "shares_noise_across_batch", False) for m in model.modules())
    if strategy == "batch" and shared:
        # one draw per forward serves the whole batch: replicas would be identical samples
        with pytest.raises(ValueError, match=rf"cannot sample module .*\({name}\)"):
            dropkit.mc_predict(model, x, 4, strategy=strategy)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" must not need a fallback
        out = dropkit.mc_predict(model, x, 4, strategy=strategy)
    assert out.shape == (4, *model(x).shape)
    assert not torch.equal(out[0], out[1]), f"{name} did not sample under {strategy}"


class TestPrefixRunsOnce:
    def test_hook_before_first_dropout_fires_once_and_sees_one_sample(self) -> None:
        m = bn_model().eval()
        seen = []
        handle = m[0].register_forward_hook(
            lambda mod, a, out: seen.append(torch._C._functorch.is_batchedtensor(out))
        )
        dropkit.mc_predict(m, torch.randn(8, 10), 50, strategy="vmap")
        handle.remove()
        # once in the discovery pass (dropkit.sites), then once for all 50 samples,
        # unbatched: computed once
        assert seen == [False, False]

    def test_layers_after_dropout_see_batched_tensors(self) -> None:
        m = bn_model().eval()
        seen = []
        handle = m[5].register_forward_pre_hook(
            lambda mod, a: seen.append(torch._C._functorch.is_batchedtensor(a[0]))
        )
        dropkit.mc_predict(m, torch.randn(8, 10), 50, strategy="vmap")
        handle.remove()
        assert seen == [False, True]  # the discovery pass, then the 50 samples batched

    def test_loop_runs_the_prefix_every_time(self) -> None:
        m = bn_model().eval()
        calls = []
        handle = m[0].register_forward_hook(lambda *a: calls.append(1))
        dropkit.mc_predict(m, torch.randn(8, 10), 5, strategy="loop")
        handle.remove()
        assert len(calls) == 1 + 5  # the discovery pass, then one per sample


class TestFallbackAndErrors:
    def test_auto_falls_back_and_names_the_module(self) -> None:
        class InPlace(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.drop = dn.Dropout(0.5)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                h = self.fc(x)
                h += self.drop(h)  # writes per-sample values into an unbatched tensor
                return h

        m = nn.Sequential(nn.Linear(4, 4), InPlace())
        expected = r"strategy 'vmap' failed in module '1' \(InPlace\)"
        with pytest.warns(RuntimeWarning, match=expected):
            out = dropkit.mc_predict(m, torch.randn(3, 4), 5)
        assert out.shape == (5, 3, 4)

    def test_explicit_strategy_raises(self) -> None:
        m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Flatten(0))  # mixes the batch
        with pytest.raises(ValueError, match="output's dim 0 to be the batch"):
            dropkit.mc_predict(m, torch.randn(3, 4), 2, strategy="batch")

    @pytest.mark.parametrize(
        "model, x",
        [
            (Residual(4, dn.DropPath(0.5, mode="batch")), torch.randn(3, 4)),
            (nn.Sequential(nn.Linear(4, 4), dn.LockedDropout(0.5)), torch.randn(5, 3, 4)),
            (nn.LSTM(4, 4, num_layers=2, dropout=0.5), torch.randn(5, 3, 4)),
        ],
        ids=["drop-path-batch-mode", "locked-dropout-time-first", "lstm-time-first"],
    )
    def test_batch_strategy_refuses_what_replication_gets_wrong(self, model, x) -> None:
        with pytest.raises(ValueError, match="strategy 'batch' cannot sample"):
            dropkit.mc_predict(model, x, 2, strategy="batch")

    def test_no_dropout_to_sample(self) -> None:
        with pytest.raises(ValueError, match="no dropout to sample"):
            dropkit.mc_predict(nn.Linear(2, 2), torch.randn(1, 2))
        with pytest.raises(ValueError, match="every rate is 0"):
            dropkit.mc_predict(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0)), torch.randn(1, 2))

    @pytest.mark.parametrize(
        "kwargs, message",
        [({"samples": 0}, "samples"), ({"strategy": "jit"}, "strategy"),
         ({"chunk_size": 0}, "chunk_size")],
    )
    def test_bad_arguments(self, kwargs, message) -> None:
        with pytest.raises(ValueError, match=rf"^mc_predict: expected `{message}`"):
            dropkit.mc_predict(bn_model(), torch.randn(2, 10), **kwargs)

    def test_inplace_torch_dropout_under_vmap(self) -> None:
        m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5, inplace=True), nn.Linear(4, 2))
        out = dropkit.mc_predict(m, torch.randn(3, 4), 4, strategy="vmap")
        assert not torch.equal(out[0], out[1])

    def test_module_generator_makes_samples_reproducible(self) -> None:
        def run() -> torch.Tensor:
            m = nn.Sequential(nn.Linear(4, 4), dn.Dropout(0.5, generator=gen(3)))
            torch.manual_seed(0)
            m[0].reset_parameters()
            return dropkit.mc_predict(m, torch.ones(2, 4), 5, strategy="vmap")

        assert torch.equal(run(), run())
