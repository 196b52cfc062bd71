"""Monte Carlo dropout: correct by construction (BatchNorm untouched), vectorized."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import dropkit
import dropkit.nn as dn
from conftest import assert_binomial, gen

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
            # 16 features or channels: at least 32 draws a sample, so that two samples
            # are alike with probability 2^-32 at most
            (lambda: nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5)), (3, 4)),
            (lambda: nn.Sequential(nn.Conv1d(2, 16, 3), dn.Dropout1d(0.5)), (3, 2, 9)),
            (lambda: nn.Sequential(nn.Conv2d(2, 16, 3), nn.BatchNorm2d(16),
                                   nn.Dropout2d(0.5)), (3, 2, 6, 6)),
            (lambda: nn.Sequential(nn.Conv3d(2, 16, 3), dn.Dropout3d(0.5)), (2, 2, 5, 5, 5)),
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
        # twice in the discovery passes (dropkit.tools.sites), then once for all 50 samples,
        # unbatched: computed once
        assert seen == [False, False, False]

    def test_layers_after_dropout_see_batched_tensors(self) -> None:
        m = bn_model().eval()
        seen = []
        handle = m[5].register_forward_pre_hook(
            lambda mod, a: seen.append(torch._C._functorch.is_batchedtensor(a[0]))
        )
        dropkit.mc_predict(m, torch.randn(8, 10), 50, strategy="vmap")
        handle.remove()
        assert seen == [False, False, True]  # two discovery passes, then 50 samples batched

    def test_loop_runs_the_prefix_every_time(self) -> None:
        m = bn_model().eval()
        calls = []
        handle = m[0].register_forward_hook(lambda *a: calls.append(1))
        dropkit.mc_predict(m, torch.randn(8, 10), 5, strategy="loop")
        handle.remove()
        assert len(calls) == 2 + 5  # the discovery passes, then one per sample


class TestAutoChoice:
    """auto times the strategies that apply on the first call and keeps the fastest."""

    @staticmethod
    def _fake_clock(monkeypatch, seconds: dict[str, tuple[float, float]]) -> None:
        """A timed run of k samples takes ``setup + per_sample * k`` seconds."""

        def timed(run, model, x, k, output, sync):
            name = next(n for n in seconds if getattr(run, "__name__", "").endswith(n)
                        or getattr(getattr(run, "func", None), "__name__", "").endswith(n))
            setup, per_sample = seconds[name]
            return run(model, x, k, None, output), setup + per_sample * k

        from dropkit.inference.sampling import auto

        monkeypatch.setattr(auto, "timed", timed)

    @pytest.mark.parametrize("fastest", ["vmap", "batch", "loop"])
    def test_the_fastest_by_the_clock_is_chosen_and_kept(self, monkeypatch, fastest) -> None:
        from dropkit.inference import mc

        times = {n: (0.010, 0.010) for n in ("vmap", "batch", "loop")}
        times[fastest] = (0.001, 0.001)
        self._fake_clock(monkeypatch, times)
        m = nn.Sequential(nn.Linear(10, 10), dn.Dropout(0.5), nn.Linear(10, 2))
        out = dropkit.mc_predict(m, torch.randn(4, 10), 40)
        assert out.shape == (40, 4, 2)
        assert mc.last_choice is not None and mc.last_choice.strategy == fastest
        assert set(mc.last_choice.seconds) == {"vmap", "batch", "loop"}
        assert "fastest when timed" in mc.last_choice.reason
        # every sample its own mask, the timed ones included
        assert len({tuple(o.flatten().tolist()) for o in out}) == 40
        # the next call reuses the choice: nothing timed again
        from dropkit.inference.sampling import auto

        monkeypatch.setattr(auto, "timed", lambda *a: pytest.fail("timed again"))
        assert dropkit.mc_predict(m, torch.randn(4, 10), 40).shape == (40, 4, 2)
        assert mc.last_choice.strategy == fastest

    def test_the_prediction_counts_setup_once_per_chunk(self, monkeypatch) -> None:
        """vmap: 10 ms to set up, 0.1 ms a sample; the loop 1 ms a sample: for 50 samples
        in one chunk vmap wins (15 ms against 50), in chunks of 2 the loop (255 against 50)."""
        from dropkit.inference import mc

        self._fake_clock(monkeypatch, {"vmap": (0.010, 0.0001), "batch": (1.0, 1.0),
                                       "loop": (0.0, 0.001)})
        m = nn.Sequential(nn.Linear(10, 10), dn.Dropout(0.5), nn.Linear(10, 2))
        dropkit.mc_predict(m, torch.randn(4, 10), 50)
        assert mc.last_choice.strategy == "vmap"
        dropkit.mc_predict(m, torch.randn(4, 10), 50, chunk_size=2)  # another key: timed
        assert mc.last_choice.strategy == "loop"

    def test_a_strategy_that_fails_is_skipped_and_named(self) -> None:
        from dropkit.inference import mc

        m = nn.Sequential(LayerDrop(), LayerDrop())  # vmap cannot branch on the coin
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = dropkit.mc_predict(m, torch.randn(4, 3), 30)
        assert out.shape == (30, 4, 3)
        assert mc.last_choice.strategy == "loop"
        assert "vmap failed in module '0' (LayerDrop)" in mc.last_choice.reason

    def test_an_input_with_no_signature_is_not_timed_at_every_call(self, monkeypatch) -> None:
        from dropkit.inference import mc

        class Scale(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc, self.drop = nn.Linear(4, 4), dn.Dropout(0.5)

            def forward(self, x: torch.Tensor, options: object) -> torch.Tensor:
                return self.drop(self.fc(x))

        from dropkit.inference.sampling import auto

        monkeypatch.setattr(auto, "timed", lambda *a: pytest.fail("timed"))
        out = dropkit.mc_predict(Scale(), (torch.randn(3, 4), object()), 4)
        assert out.shape == (4, 3, 4)
        assert mc.last_choice.strategy == "vmap"
        assert mc.last_choice.reason.startswith("not timed: the input is not a plain")

    def test_an_explicit_strategy_is_recorded_as_asked(self) -> None:
        from dropkit.inference import mc

        m = nn.Sequential(nn.Linear(10, 10), dn.Dropout(0.5))
        dropkit.mc_predict(m, torch.randn(4, 10), 4, strategy="batch")
        assert (mc.last_choice.strategy, mc.last_choice.reason) == ("batch", "asked for")


class TestCompiledModel:
    """A ``torch.compile``'d model (an ``OptimizedModule``) samples as its original does:
    BatchNorm untouched, and no warning from the discovery pass's global module hooks."""

    @pytest.mark.parametrize("strategy", STRATEGIES)
    def test_samples_and_leaves_it_untouched(self, strategy: str) -> None:
        m = bn_model().eval()
        compiled = torch.compile(m, backend="eager")
        modes, state = _snapshot(m)
        x = torch.randn(8, 10)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = dropkit.mc_predict(compiled, x, 6, strategy=strategy)
        assert len({tuple(o.flatten().tolist()) for o in out}) == 6
        assert [x.training for x in m.modules()] == modes
        for k, v in m.state_dict().items():
            assert torch.equal(v, state[k]), k


class TestRerouting:
    """torch's dropout calls go through dropkit's vmap-safe draws only where a site needs
    it: the mode costs a Python call per torch function of the pass."""

    @staticmethod
    def _count(monkeypatch) -> list[int]:
        from dropkit.inference.sampling import reroute

        entered: list[int] = []

        class Counting(reroute.VmapSafeDropout):
            def __enter__(self):  # type: ignore[no-untyped-def]
                entered.append(1)
                return super().__enter__()

        monkeypatch.setattr(reroute, "VmapSafeDropout", Counting)
        return entered

    @pytest.mark.parametrize("drop, rerouted", [
        (dn.Dropout(0.5), False), (dn.Dropout(0.5, backend="seeded"), False),
        (dn.GaussianDropout(0.5), False), (nn.Dropout(0.5), True),
        (nn.AlphaDropout(0.5), True)])
    def test_only_where_a_site_is_not_dropkit_s(self, monkeypatch, drop, rerouted) -> None:
        entered = self._count(monkeypatch)
        m = nn.Sequential(nn.Linear(4, 16), drop, nn.Linear(16, 2))  # 48 units: never equal
        out = dropkit.mc_predict(m, torch.randn(3, 4), 4, strategy="vmap")
        assert len(entered) == int(rerouted)
        assert not torch.equal(out[0], out[1])

    def test_functional_and_attention_sites_are_rerouted(self, monkeypatch) -> None:
        entered = self._count(monkeypatch)
        dropkit.mc_predict(FunctionalDropout(4, 0.5), torch.randn(3, 4), 4, strategy="vmap")
        dropkit.mc_predict(nn.MultiheadAttention(4, 2, dropout=0.5),
                           (torch.randn(3, 2, 4),) * 3, 4, strategy="vmap", output=lambda o: o[0])
        assert len(entered) == 2

    def test_element_dropout_no_discovery_saw_draws_per_sample(self, monkeypatch) -> None:
        class Hidden(nn.Module):
            """torch's dropout on a branch the discovery input never takes."""

            def __init__(self) -> None:
                super().__init__()
                self.drop = dn.Dropout(0.5)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                if x.abs().max() > 100:
                    x = F.dropout(x, 0.5, self.drop.training)
                return torch.cat([x, self.drop(torch.ones_like(x[:, :64]))], 1)  # (N, D + 64)

        entered = self._count(monkeypatch)
        m, x = Hidden(), torch.ones(1, 4000)
        dropkit.mc_predict(m, x, 2, strategy="vmap")  # discovery: dropkit's draw alone
        torch.manual_seed(0)
        out = dropkit.mc_predict(m, x * 1000, 2, strategy="vmap")[:, :, :4000]  # cached
        assert entered == []
        # each sample its own mask: two agree at a position with probability 1/2
        assert_binomial(int(((out[0] == 0) == (out[1] == 0)).sum()), 4000, 0.5)

    def test_attention_dropout_no_discovery_saw_fails_loudly(self) -> None:
        class Hidden(nn.Module):
            """Attention dropout on a branch the discovery input never takes."""

            def __init__(self) -> None:
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.drop = dn.Dropout(0.5)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                if x.abs().max() > 100:
                    q = x.unsqueeze(0)
                    p = 0.5 if self.drop.training else 0.0
                    x = F.scaled_dot_product_attention(q, q, q, dropout_p=p)[0]
                return self.drop(self.fc(x))

        m, small = Hidden(), torch.randn(3, 4)
        dropkit.mc_predict(m, small, 4, strategy="vmap")  # discovery: no attention call
        with pytest.raises(RuntimeError, match="different inplace randomness"):
            dropkit.mc_predict(m, small * 1000, 4, strategy="vmap")


class TestOutOfMemory:
    """Vectorized samples hold T copies of every activation after the first draw: where
    the device runs out of memory, the chunk of samples drawn at once is halved."""

    class Rows(nn.Module):
        """Runs out of memory above ``limit`` rows, as a device would."""

        def __init__(self, limit: int) -> None:
            super().__init__()
            self.limit = limit

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] > self.limit:
                raise torch.OutOfMemoryError(f"out of memory: {x.shape[0]} rows")
            return x

    def test_batch_halves_its_chunk_until_it_fits(self) -> None:
        m = nn.Sequential(nn.Linear(4, 64), dn.Dropout(0.5), self.Rows(limit=7 * 3))
        x = torch.randn(3, 4)
        # 50 samples of 3 rows: 150 rows, then 75, 39, 21 (7 samples a chunk) fits
        with pytest.warns(RuntimeWarning, match=r"drawing 50 samples at once; it drew them "
                                                 r"7 at a time \(pass chunk_size=7"):
            out = dropkit.mc_predict(m, x, 50, strategy="batch")
        assert out.shape == (50, 3, 64)
        # 192 dropped-or-kept units a sample: 50 distinct but for a 2^-180 chance
        assert len({tuple(o.flatten().tolist()) for o in out}) == 50

    def test_vmap_halves_a_given_chunk(self, monkeypatch) -> None:
        from dropkit.inference.sampling import strategies

        real, sizes = strategies.by_vmap, []

        def limited(model, x, samples, chunk, output, reroute=True):  # type: ignore[no-untyped-def]
            sizes.append(chunk)
            if chunk > 4:
                raise torch.OutOfMemoryError("out of memory")
            return real(model, x, samples, chunk, output, reroute)

        monkeypatch.setattr(strategies, "by_vmap", limited)
        m = nn.Sequential(nn.Linear(4, 4), dn.Dropout(0.5))
        with pytest.warns(RuntimeWarning, match="drawing 12 samples at once; it drew them 3"):
            out = dropkit.mc_predict(m, torch.randn(2, 4), 20, strategy="vmap", chunk_size=12)
        assert sizes == [12, 6, 3] and out.shape == (20, 2, 4)

    def test_one_sample_that_does_not_fit_raises(self) -> None:
        m = nn.Sequential(nn.Linear(4, 4), dn.Dropout(0.5), self.Rows(limit=2))
        with pytest.raises(torch.OutOfMemoryError):
            dropkit.mc_predict(m, torch.randn(3, 4), 5, strategy="batch")
        with pytest.raises(torch.OutOfMemoryError):
            dropkit.mc_predict(m, torch.randn(3, 4), 5, strategy="loop")

    def test_the_cpu_allocator_s_failure_halves_too(self) -> None:
        """On the CPU, running out of memory is a RuntimeError from the allocator."""

        class CpuRows(self.Rows):  # type: ignore[name-defined]
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                if x.shape[0] > self.limit:
                    raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. "
                                       "DefaultCPUAllocator: can't allocate memory: you "
                                       "tried to allocate 400000000000000 bytes.")
                return x

        m = nn.Sequential(nn.Linear(4, 64), dn.Dropout(0.5), CpuRows(limit=7 * 3))
        with pytest.warns(RuntimeWarning, match=r"it drew them 7 at a time"):
            out = dropkit.mc_predict(m, torch.randn(3, 4), 50, strategy="batch")
        assert out.shape == (50, 3, 64)

    def test_what_fits_draws_without_a_warning(self) -> None:
        m = nn.Sequential(nn.Linear(4, 4), dn.Dropout(0.5), self.Rows(limit=15))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dropkit.mc_predict(m, torch.randn(3, 4), 5, strategy="batch")


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

        from dropkit.inference import mc

        m = nn.Sequential(nn.Linear(4, 4), InPlace())
        out = dropkit.mc_predict(m, torch.randn(3, 4), 5)  # timed: vmap failed, skipped
        assert out.shape == (5, 3, 4)
        assert "vmap failed in module '1' (InPlace)" in mc.last_choice.reason
        # a chosen strategy that fails later falls back with a warning naming the module
        from dropkit.inference.sampling import auto

        auto.CHOSEN[m] = (auto.CHOSEN[m][0], mc.Choice("vmap", "forced", {}))
        expected = r"strategy 'vmap' failed in module '1' \(InPlace\)"
        with pytest.warns(RuntimeWarning, match=expected):
            assert dropkit.mc_predict(m, torch.randn(3, 4), 5).shape == (5, 3, 4)

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


# -- models dropkit did not write -----------------------------------------------------

from foreign import (  # noqa: E402
    FunctionalDropout,
    bert,
    gpt2,
    images,
    llama,
    text_batch,
    timm_model,
    tokens,
    vit,
)


class Stuck(nn.Module):
    """Gates its dropout on a flag of its own that no tool can know: never samples."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.dropout = 0.5
        self.use_dropout = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.fc(x), self.dropout, self.training and self.use_dropout)


class LayerDrop(nn.Module):
    """fairseq/transformers' LayerDrop: one coin per batch skips the layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.layerdrop = 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.rand([]) < self.layerdrop:
            return x
        return self.fc(x)


# one site kind above 0 in each: which kind must sample
FOREIGN = {
    "bert-sdpa-fused-child": (lambda: bert("sdpa"), text_batch),
    "bert-eager-functional": (lambda: bert("eager"), text_batch),
    "bert-hidden-modules": (lambda: bert("sdpa", attention=0.0, hidden=0.3), text_batch),
    "llama-attribute": (llama, text_batch),
    "llama-eager-attribute": (lambda: llama(attn="eager"), text_batch),
    "gpt2-fused-child": (gpt2, text_batch),
    "vit-attribute": (vit, images),
    "timm-fused-child": (timm_model, tokens),
    "timm-module": (lambda: timm_model(fused_attn=False), tokens),
    "timm-drop-prob": (lambda: timm_model(attn_drop=0.0, drop_path=0.5), tokens),
    "rate-in-the-code": (lambda: FunctionalDropout(3, 0.3),
                         lambda: torch.randn(4, 3, generator=gen(1))),
}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", list(FOREIGN))
def test_foreign_samples_differ_and_model_untouched(name: str, strategy: str) -> None:
    make, data = FOREIGN[name]
    m, x = make().eval(), data()
    if (name, strategy) == ("timm-drop-prob", "vmap"):
        # timm draws in place (new_empty(...).bernoulli_): vmap cannot batch that on an
        # unbatched tensor ("auto" never tries: the first draw comes too early)
        with pytest.raises(RuntimeError, match="Cannot ask for different inplace randomness"):
            dropkit.mc_predict(m, x, 8, strategy=strategy)
        return
    modes, state = _snapshot(m)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = dropkit.mc_predict(m, x, 8, strategy=strategy)
    assert out.shape[0] == 8
    assert not torch.equal(out[0], out[1])
    assert [t.training for t in m.modules()] == modes
    assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())
    if strategy == "auto":  # its first choice worked: no fallback
        assert not [w for w in caught if "mc_predict" in str(w.message)]


class TestStructuredInputsAndOutputs:
    def test_model_output_gives_logits_and_key_or_callable_selects(self) -> None:
        m, x = bert(), text_batch()
        assert dropkit.mc_predict(m, x, 3).shape == (3, 4, 3)
        torch.manual_seed(0)
        by_key = dropkit.mc_predict(m, x, 3, strategy="loop", output="logits")
        torch.manual_seed(0)
        by_fn = dropkit.mc_predict(m, x, 3, strategy="loop", output=lambda o: o.logits)
        assert torch.equal(by_key, by_fn)

    def test_tuple_of_positional_arguments(self) -> None:
        class Two(nn.Module):
            def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                return nn.functional.dropout(a + b, 0.5, self.training)

        for strategy in STRATEGIES:
            out = dropkit.mc_predict(Two(), (torch.ones(2, 3), torch.ones(2, 3)), 4,
                                     strategy=strategy)
            assert out.shape == (4, 2, 3)

    def test_an_output_without_logits_lists_what_it_holds(self) -> None:
        class Pair(nn.Module):
            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return nn.functional.dropout(x, 0.5, self.training), x

        # 64 units: two samples alike (and refused as such) with probability 2^-64
        with pytest.raises(ValueError, match=r"^mc_predict: the model returned a tuple of "
                                             r"\['Tensor\(2, 32\)', 'Tensor\(2, 32\)'\]"):
            dropkit.mc_predict(Pair(), torch.ones(2, 32), 2)
        out = dropkit.mc_predict(Pair(), torch.ones(2, 32), 2, output=lambda o: o[0])
        assert out.shape == (2, 2, 32)

    def test_a_key_that_picks_no_tensor(self) -> None:
        with pytest.raises(ValueError, match=r"^mc_predict: output='hidden' picks NoneType "
                                             r"from a SequenceClassifierOutput with keys "
                                             r"\['logits'\]"):
            dropkit.mc_predict(bert(), text_batch(), 2, output="hidden")

    def test_bad_output_type_and_mapping_keys(self) -> None:
        with pytest.raises(TypeError, match=r"^mc_predict: expected `output` to be None, a "
                                            r"str or a callable, got int"):
            dropkit.mc_predict(bert(), text_batch(), 2, output=3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"expected a mapping input to have str keys"):
            dropkit.mc_predict(bert(), {0: torch.ones(2)}, 2)


class TestNeverSilent:
    def test_identical_samples_raise_naming_the_site(self) -> None:
        m = nn.Sequential(nn.Linear(3, 3), Stuck())
        with pytest.raises(RuntimeError, match=r"^mc_predict: all 5 samples are identical.*"
                                               r"'1.dropout' \(Stuck, rate 0.5\): no dropout "
                                               r"call from the code of '1' drew"):
            dropkit.mc_predict(m, torch.randn(2, 3), 5, strategy="loop")

    def test_one_sample_cannot_be_judged(self) -> None:
        m = nn.Sequential(nn.Linear(3, 3), Stuck())
        assert dropkit.mc_predict(m, torch.randn(2, 3), 1).shape == (1, 2, 3)


class TestSharedDrawsAndGates:
    def test_layerdrop_is_never_replicated_along_the_batch(self) -> None:
        m = nn.Sequential(LayerDrop(), LayerDrop())
        with pytest.raises(ValueError, match=r"strategy 'batch' cannot sample attribute site "
                                             r"'0.layerdrop' \(LayerDrop.layerdrop\): one draw"):
            dropkit.mc_predict(m, torch.randn(4, 3), 4, strategy="batch")
        # vmap cannot branch on a coin; batch is never tried for a shared draw
        with pytest.raises(RuntimeError, match="data-dependent control flow"):
            dropkit.mc_predict(m, torch.randn(4, 3), 3, strategy="vmap")
        out = dropkit.mc_predict(m, torch.randn(4, 3), 30, strategy="auto")  # the loop
        assert len({tuple(o.flatten().tolist()) for o in out}) > 1

    def test_mc_mode_finds_fused_gates_at_the_first_call(self) -> None:
        m, x = timm_model(), tokens()
        with dropkit.mc_mode(m), torch.no_grad():
            assert not m[1].attn.training  # unknown before a pass
            a, b = m(x), m(x)
            assert m[1].attn.training and not m[0].bn.training
        assert not torch.equal(a, b)
        assert not any(t.training for t in m.modules())

    @pytest.mark.parametrize("stack", [False, True])
    def test_torch_transformer_layers_leave_their_fast_path(self, stack) -> None:
        # in eval, TransformerEncoderLayer takes a fused path with no dropout: its own flag
        # gates every site inside it, so MC mode switches it on (and only it, with them)
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(8, 2, 16, 0.3, batch_first=True)
        model = (nn.TransformerEncoder(layer, 2, enable_nested_tensor=False) if stack
                 else layer).eval()
        x = torch.randn(3, 5, 8, generator=gen(1))
        out = dropkit.mc_predict(model, x, 400, generator=gen(0))
        assert not any(m.training for m in model.modules())
        model.train()  # no BatchNorm inside: training mode is MC mode here
        with torch.no_grad():
            ref = torch.stack([model(x) for _ in range(400)])
        model.eval()
        z = (out.mean(0) - ref.mean(0)).abs() / ((out.var(0) + ref.var(0)) / 400).sqrt()
        m = z.numel()  # Bonferroni over the outputs, family-wise level 1e-3
        assert z.max() < torch.distributions.Normal(0, 1).icdf(torch.tensor(1 - 1e-3 / (2 * m)))

    def test_mc_mode_with_an_example_input(self) -> None:
        m, x = gpt2(), text_batch()
        with dropkit.mc_mode(m, x):
            assert m.transformer.h[0].attn.training and not m.transformer.h[0].ln_1.training


class TestSdpaMath:
    """dropkit's math form of SDPA (vmap's route for attention dropout) against torch's,
    without dropout, on every kind of mask torch takes."""

    MASKS = ["none", "bool", "float", "causal", "gqa", "bool-empty-row", "float-inf-row",
             "float-min-row", "causal-and-bool", "causal-short-query", "left-padded",
             "broadcast-batch"]

    @pytest.mark.parametrize("mask", MASKS)
    def test_equals_torch_without_dropout(self, mask: str) -> None:
        from dropkit.inference.sampling.reroute import sdpa_math as _sdpa_math

        g = gen(4)
        q, k, v = (torch.randn(2, 4, 5, 8, generator=g) for _ in range(3))
        kw: dict = {}
        if mask in ("bool", "bool-empty-row", "causal-and-bool"):
            kw["attn_mask"] = torch.rand(5, 5, generator=g) > 0.3
            kw["attn_mask"][:, 0] = True
            if mask == "bool-empty-row":
                kw["attn_mask"][2] = False  # a row that attends to nothing
            kw["is_causal"] = mask == "causal-and-bool"
        elif mask.startswith("float"):
            kw["attn_mask"] = torch.randn(5, 5, generator=g)
            if mask == "float-inf-row":
                kw["attn_mask"][1] = float("-inf")
            elif mask == "float-min-row":  # transformers' additive masks use finfo.min
                kw["attn_mask"][1] = torch.finfo(torch.float32).min
        elif mask == "causal":
            kw["is_causal"] = True
        elif mask == "causal-short-query":
            q, kw["is_causal"] = q[:, :, :3], True
        elif mask == "gqa":
            k, v, kw["enable_gqa"] = k[:, :2], v[:, :2], True
        elif mask == "left-padded":  # (N, 1, L, S): causal, the first keys of row 0 padding
            keep = torch.ones(5, 5, dtype=torch.bool).tril().expand(2, 1, 5, 5).clone()
            keep[0, :, :, :2] = False  # row 0's first two queries see no key at all
            kw["attn_mask"] = keep
        elif mask == "broadcast-batch":
            kw["attn_mask"] = torch.rand(2, 1, 1, 5, generator=g) > 0.5
            kw["attn_mask"][1] = False  # the whole second batch element masked
        expected = nn.functional.scaled_dot_product_attention(q, k, v, **kw)
        got = _sdpa_math(q, k, v, **kw)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, expected)

    def test_left_padded_causal_lm_samples_are_finite_under_vmap(self) -> None:
        """GPT-NeoX with left padding: the padded rows attend to nothing."""
        pytest.importorskip("transformers")
        from foreign import gpt_neox, left_padded_batch

        m, x = gpt_neox(), left_padded_batch()
        for strategy in ("vmap", "loop"):
            out = dropkit.mc_predict(m, x, 4, strategy=strategy)
            assert torch.isfinite(out).all(), strategy


class TestRawDrawsUnderVmap:
    """A draw on a tensor with no sample dimension (the first op of the model) gives each
    sample its own noise under vmap, or fails naming the module: never one shared draw."""

    class First(nn.Module):
        def __init__(self, draw) -> None:
            super().__init__()
            self.draw, self.fc = draw, nn.Linear(64, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.draw(x, self.training))

    DRAWS = {
        "functional-dropout": lambda x, t: F.dropout(x, 0.5, t),
        "attention-dropout": lambda x, t: F.scaled_dot_product_attention(
            x[None, None], x[None, None], x[None, None], dropout_p=0.5 if t else 0.0)[0, 0],
        "rand_like": lambda x, t: x * (torch.rand_like(x) > 0.5) if t else x,
        "randn": lambda x, t: x + torch.randn(x.shape) if t else x,
        "bernoulli": lambda x, t: x * torch.bernoulli(torch.full_like(x, 0.5)) if t else x,
    }

    @pytest.mark.parametrize("name", list(DRAWS))
    def test_each_sample_draws_its_own(self, name: str) -> None:
        m, x = self.First(self.DRAWS[name]).eval(), torch.randn(3, 64, generator=gen(0))
        out = dropkit.mc_predict(m, x, 4, strategy="vmap")
        # 3 x 64 units per sample: two samples alike only by a 2^-192 chance
        assert len({tuple(o.flatten().tolist()) for o in out}) == 4

    def test_an_in_place_draw_fails_naming_the_module(self) -> None:
        m = self.First(lambda x, t: x + x.new_empty(x.shape).normal_() if t else x).eval()
        with pytest.raises(RuntimeError, match=r"^mc_predict: strategy 'vmap' cannot sample "
                                               r"the model's own forward \(First\)"):
            dropkit.mc_predict(m, torch.randn(3, 64), 4, strategy="vmap")
        assert dropkit.mc_predict(m, torch.randn(3, 64), 4).shape == (4, 3, 4)  # auto


class TestInputsAtTheEdges:
    def test_an_empty_batch_gives_empty_samples(self) -> None:
        m = nn.Sequential(nn.Linear(4, 8), dn.Dropout(0.5), nn.Linear(8, 3))
        for strategy in ("auto", "vmap", "batch", "loop"):
            assert dropkit.mc_predict(m, torch.randn(0, 4), 5, strategy=strategy).shape == (
                5, 0, 3)

    def test_a_model_that_is_not_a_module(self) -> None:
        with pytest.raises(TypeError, match=r"^mc_predict: expected `model` to be a "
                                            r"torch.nn.Module, got NoneType"):
            dropkit.mc_predict(None, torch.randn(2, 4))  # type: ignore[arg-type]

    def test_an_output_callable_that_raises_is_the_caller_s_error(self) -> None:
        m = nn.Sequential(nn.Linear(4, 8), dn.Dropout(0.5), nn.Linear(8, 3))

        def pick(out: torch.Tensor) -> torch.Tensor:
            raise KeyError("logits")

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no strategy is blamed, none falls back
            with pytest.raises(ValueError, match=r"^mc_predict: the output= callable raised "
                                                 r"on a Tensor: KeyError: 'logits'"):
                dropkit.mc_predict(m, torch.randn(2, 4), 4, output=pick)


class TestExplicitGenerator:
    """generator=: the call's every draw follows from it; the global stream is untouched."""

    @pytest.mark.parametrize("strategy", ["vmap", "batch", "loop", "auto"])
    def test_same_state_same_samples_and_the_global_stream_untouched(self, strategy) -> None:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.Linear(16, 3)).eval()
        x = torch.randn(5, 6)
        before = torch.get_rng_state()
        a = dropkit.mc_predict(model, x, 8, strategy=strategy,
                               generator=torch.Generator().manual_seed(1))
        assert torch.equal(torch.get_rng_state(), before)
        b = dropkit.mc_predict(model, x, 8, strategy=strategy,
                               generator=torch.Generator().manual_seed(1))
        c = dropkit.mc_predict(model, x, 8, strategy=strategy,
                               generator=torch.Generator().manual_seed(2))
        if strategy != "auto":  # auto may time and choose another strategy on the 2nd call
            assert torch.equal(a, b)
        assert not torch.equal(a, c)

    def test_consistent_true_draws_its_seed_from_it(self) -> None:
        model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5)).eval()
        x = torch.randn(3, 4)
        runs = [dropkit.mc_predict(model, x, 4, consistent=True,
                           generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
        assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])

    def test_a_generator_of_another_type_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match=r"expected `generator` to be a torch.Generator "
                                            r"or None, got int"):
            dropkit.mc_predict(nn.Dropout(0.5), torch.ones(2, 3), 3, generator=3)


@pytest.mark.parametrize("strategy", ["vmap", "batch", "loop"])
def test_a_generator_makes_a_transformers_model_s_samples_reproducible(strategy) -> None:
    """generator= reaches the draws of code dropkit did not write (GPT-2's attention)."""
    pytest.importorskip("transformers")
    model, x = gpt2(), text_batch()
    a, b, c = (dropkit.mc_predict(model, x, 4, strategy=strategy,
                                  generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
