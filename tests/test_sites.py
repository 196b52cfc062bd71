"""The registry of dropout sites, on models dropkit did not write: tiny transformers
configs (BERT eager and SDPA, Llama, GPT-2, ViT) and copies of timm's blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dropkit
import dropkit.nn as dn
from dropkit._trace import recording
from foreign import (
    Block,
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


def _rates_seen(model: nn.Module, x: object, train: bool = True) -> list[float]:
    """The rate of every dropout call the forward makes (model in training mode)."""
    seen: list[float] = []
    model.train(train)
    try:
        with torch.no_grad():  # a check a tool deferred to the next call runs here, unseen
            model(**x) if isinstance(x, dict) else model(x)
        with torch.no_grad(), recording(model, lambda c: seen.append(c.p) if c.p is not None
                                        else None):
            model(**x) if isinstance(x, dict) else model(x)
    finally:
        model.eval()
    return seen


class TestStaticDiscovery:
    def test_torch_and_dropkit_modules_and_rnns(self) -> None:
        m = nn.Sequential(nn.Dropout(0.1), dn.DropPath(0.2), dn.GaussianNoise(0.3),
                          nn.LSTM(4, 4, num_layers=2, dropout=0.4), nn.LSTM(4, 4, dropout=0.0),
                          nn.MultiheadAttention(4, 2, dropout=0.5))
        sites = dropkit.dropout_sites(m)
        assert [(s.name, s.kind, s.attr, s.rate) for s in sites] == [
            ("0", "module", "p", pytest.approx(0.1)),
            ("1", "module", "p", pytest.approx(0.2)),
            ("2", "module", "std", pytest.approx(0.3)),
            ("3", "module", "dropout", pytest.approx(0.4)),  # a 1-layer LSTM's never acts
            ("5.dropout", "attribute", "dropout", pytest.approx(0.5)),
        ]
        assert not sites[2].is_probability and sites[3].time_first

    def test_declared_properties_not_names(self) -> None:
        class LockedDropout(nn.Module):  # a foreign class with dropkit's class name
            def __init__(self) -> None:
                super().__init__()
                self.p = 0.5

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return F.dropout(x, self.p, self.training)

        sites = dropkit.dropout_sites(nn.Sequential(LockedDropout(), dn.LockedDropout(0.5),
                                                    dn.LockedDropout(0.5, batch_first=True)))
        assert [s.time_first for s in sites] == [False, True, False]

    def test_foreign_drop_path_and_float_p_leaves(self) -> None:
        m = Block(drop_path=0.1, attn_drop=0.2)
        names = [n for n, _ in dropkit.find_dropout(m)]
        assert names == ["attn.attn_drop", "attn.proj_drop", "drop_path1", "mlp.drop1",
                         "mlp.drop2", "drop_path2"]
        assert dropkit.dropout_sites(m)[2].attr == "drop_prob"

    def test_torch_modules_with_a_p_are_not_sites(self) -> None:
        m = nn.Sequential(nn.Linear(3, 3), nn.PairwiseDistance(p=1.0))
        assert dropkit.find_dropout(m) == []

    @pytest.mark.parametrize("attn", ["sdpa", "eager"])
    def test_bert_lists_every_dropout(self, attn: str) -> None:
        names = [n for n, _ in dropkit.find_dropout(bert(attn))]
        assert "bert.encoder.layer.0.attention.self.dropout" in names
        assert "bert.encoder.layer.1.output.dropout" in names and "dropout" in names

    def test_llama_float_attribute_sites(self) -> None:
        m = llama()
        found = dropkit.find_dropout(m)
        assert [n for n, _ in found] == ["model.layers.0.self_attn.attention_dropout",
                                         "model.layers.1.self_attn.attention_dropout"]
        assert found[0][1] is m.model.layers[0].self_attn  # the owner of the attribute

    def test_bad_model(self) -> None:
        with pytest.raises(TypeError, match=r"^dropout_sites: expected `model` to be a "
                                            r"torch.nn.Module, got int"):
            dropkit.dropout_sites(3)  # type: ignore[arg-type]


class TestFastPathGates:
    def test_a_transformer_layer_gates_every_site_inside_it(self) -> None:
        layer = nn.TransformerEncoderLayer(8, 2, 16, 0.3, batch_first=True)
        model = nn.Sequential(nn.Linear(8, 8), nn.TransformerEncoder(layer, 1,
                                                                     enable_nested_tensor=False))
        sites = {s.name: [g for g, _ in s.gates] for s in dropkit.dropout_sites(model)}
        assert sites["1.layers.0.dropout1"] == ["1", "1.layers.0", "1.layers.0.dropout1"]
        assert sites["1.layers.0.self_attn.dropout"] == ["1", "1.layers.0",
                                                         "1.layers.0.self_attn"]
        assert all(g != "0" for gates in sites.values() for g in gates)


class TestDiscoveryPass:
    def test_fused_attention_gate_found(self) -> None:
        m = timm_model(attn_drop=0.5)
        site = next(s for s in dropkit.dropout_sites(m, tokens()) if s.name.endswith("attn_drop"))
        assert [n for n, _ in site.gates] == ["1.attn.attn_drop", "1.attn"]
        assert site.sampled and site.calls[0].startswith("scaled_dot_product_attention at ")

    @pytest.mark.parametrize("attn", ["sdpa", "eager"])
    def test_bert_attention_gated_by_the_attention_module(self, attn: str) -> None:
        m = bert(attn)
        site = next(s for s in dropkit.dropout_sites(m, text_batch())
                    if s.name == "bert.encoder.layer.0.attention.self.dropout")
        assert site.gates[1][0] == "bert.encoder.layer.0.attention.self"
        assert site.sampled

    def test_gpt2_attention_reads_its_childs_rate(self) -> None:
        m = gpt2(attn=0.5)
        site = next(s for s in dropkit.dropout_sites(m, text_batch())
                    if s.name == "transformer.h.0.attn.attn_dropout")
        assert site.gates[1][0] == "transformer.h.0.attn" and site.sampled

    def test_rate_written_in_the_code_is_a_functional_site(self) -> None:
        class Hard(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return F.dropout(x, 0.25, self.training)

        m = nn.Sequential(nn.Linear(3, 3), Hard())
        sites = dropkit.dropout_sites(m, torch.randn(2, 3))
        assert [(s.name, s.kind, s.rate, s.settable) for s in sites] == [
            ("1:dropout", "functional", 0.25, False)]
        assert dropkit.dropout_sites(m) == []  # static discovery cannot see it
        with pytest.raises(ValueError, match=r"^set_rate: site '1:dropout' drops at a rate "
                                             r"written in the code of module '1' \(Hard\)"):
            sites[0].check_rate("set_rate", 0.1)

    def test_static_discovery_misses_an_identity_drop_path(self) -> None:
        # timm builds nn.Identity where drop_path == 0: no rate change can reach it.
        assert not any("drop_path" in n for n, _ in dropkit.find_dropout(Block(drop_path=0.0)))

    @pytest.mark.parametrize("make, x", [(timm_model, tokens()), (lambda: bert("eager"),
                                                                     text_batch())])
    def test_leaves_modes_buffers_and_random_streams(self, make, x) -> None:
        m = make()
        g = torch.Generator().manual_seed(3)
        m.noise_source = g  # a generator held by a module is restored too
        modes = [x.training for x in m.modules()]
        state = {k: v.clone() for k, v in m.state_dict().items()}
        before, g_before = torch.get_rng_state(), g.get_state()
        dropkit.dropout_sites(m, x)
        assert [x.training for x in m.modules()] == modes
        assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())
        assert torch.equal(torch.get_rng_state(), before)
        assert torch.equal(g.get_state(), g_before)


class TestSetRateOnForeignModels:
    def test_llama_rate_reaches_the_attention_call(self) -> None:
        m = llama(attention=0.0)
        assert set(_rates_seen(m, text_batch())) == {0.0}
        dropkit.set_rate(m, 0.3, example_input=text_batch())  # observed read: no check later
        assert set(_rates_seen(m, text_batch())) == {0.3}

    def test_gpt2_and_timm_child_rate_reaches_the_fused_call(self) -> None:
        m = gpt2(attn=0.1)
        dropkit.set_rate(m, {"transformer.h.0.attn.attn_dropout": 0.4})
        assert 0.4 in _rates_seen(m, text_batch())
        t = timm_model(attn_drop=0.1)
        dropkit.set_rate(t, 0.35)
        assert set(_rates_seen(t, tokens())) == {0.35}

    def test_foreign_drop_prob_set(self) -> None:
        m = Block(drop_path=0.1)
        dropkit.set_rate(m, {"drop_path1": 0.3})
        assert m.drop_path1.drop_prob == 0.3 and m.drop_path2.drop_prob == 0.1

    def test_invalid_rate_on_an_attribute_changes_nothing(self) -> None:
        m = llama(attention=0.1)
        with pytest.raises(ValueError, match=r"^set_rate: site 'model.layers.1.self_attn."
                                             r"attention_dropout': expected `p`"):
            dropkit.set_rate(m, {"model.layers.0.self_attn.attention_dropout": 0.2,
                                 "model.layers.1.self_attn.attention_dropout": 1.5})
        assert m.model.layers[0].self_attn.attention_dropout == 0.1

    def test_one_float_leaves_gaussian_std_alone(self) -> None:
        m = nn.Sequential(nn.Dropout(0.1), dn.GaussianNoise(0.7))
        assert dropkit.set_rate(m, 0.2) == {"0": 0.2}
        assert m[1].std == 0.7
        dropkit.set_rate(m, {"1": 2.0})  # a std may exceed 1
        assert m[1].std == 2.0
        with pytest.raises(ValueError, match=r"site '1': expected `std` to be a finite"):
            dropkit.set_rate(m, {"1": -1.0})

    def test_scheduler_drives_vit_attribute_sites(self) -> None:
        m = vit(attention=0.0)
        sched = dropkit.DropoutScheduler(m, dropkit.schedules.linear(0.0, 0.2, 2))
        sched.step()
        assert m.vit.layers[0].attention.attention_dropout == pytest.approx(0.1)
        sched.step()
        # every site follows: the embeddings' dropout, and per layer the attention's
        # float attribute and two dropout modules
        assert _rates_seen(m, images()) == [pytest.approx(0.2)] * 7


def test_import_dropkit_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, dropkit; heavy = [m for m in ('transformers', 'triton', 'lightning') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


class SkippingEncoder(nn.Module):
    """fairseq/transformers' LayerDrop around timm attention layers."""

    def __init__(self, layerdrop: float) -> None:
        super().__init__()
        from foreign import Attention

        self.layerdrop = layerdrop
        self.layers = nn.ModuleList([Attention(8, 2, attn_drop=0.5) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            if self.training and self.layerdrop > 0.0 and torch.rand([]) < self.layerdrop:
                continue
            x = x + layer(x)
        return x


class TestLayerDropInTheDiscoveryPass:
    def test_no_layer_is_skipped_so_every_gate_is_found(self) -> None:
        m = SkippingEncoder(layerdrop=0.99).eval()
        sites = {s.name: s for s in dropkit.dropout_sites(m, tokens())}
        for i in range(3):
            site = sites[f"layers.{i}.attn_drop"]
            assert site.gates[1][0] == f"layers.{i}" and site.sampled
        assert sites["layerdrop"].sampled is None  # held at 0 in the pass: not observed
        assert m.layerdrop == 0.99

    def test_mc_predict_samples_every_layer(self) -> None:
        m, x = SkippingEncoder(layerdrop=0.5).eval(), tokens()
        torch.manual_seed(0)  # mc_predict draws from the global generator
        out = dropkit.mc_predict(m, x, 40)
        # a sample that skipped every layer is x itself; every other one is unique
        ran = [o for o in out if not torch.equal(o, x)]
        assert 0 < len(ran) < 40  # P(all 40 run) = (7/8)^40 < 0.005; P(none) = 8^-40
        assert len({tuple(o.flatten().tolist()) for o in ran}) == len(ran)


class TestDiscoveryCache:
    """mc_predict's discovery pass runs once per model and input signature: a pool scored
    in batches pays it once; any change it could depend on runs it again."""

    @pytest.fixture
    def passes(self, monkeypatch) -> list[int]:
        from dropkit.tools import sites

        count: list[int] = []
        real = sites.discover

        def counting(model, x):
            count.append(1)
            return real(model, x)

        monkeypatch.setattr(sites, "discover", counting)
        return count

    def test_the_same_model_and_input_signature_run_one_pass(self, passes) -> None:
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), dn.Dropout(0.5), nn.Linear(8, 2))
        for seed in range(3):  # other values, same shape: the same answer
            dropkit.mc_predict(model, torch.randn(5, 4, generator=torch.Generator()
                                                  .manual_seed(seed)), 4)
        assert len(passes) == 1

    @pytest.mark.parametrize("change", ["shape", "dtype", "rate", "numpy-rate", "training",
                                        "module", "hook", "mapping"])
    def test_a_change_runs_the_pass_again(self, passes, change) -> None:
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), dn.Dropout(0.5), nn.Linear(8, 2))
        x = torch.randn(5, 4)
        dropkit.mc_predict(model, x, 4)
        if change == "shape":
            x = torch.randn(6, 4)
        elif change == "dtype":
            model, x = model.double(), x.double()
        elif change == "rate":
            model[2].p = 0.3
        elif change == "numpy-rate":  # a float subclass: the key's fast type check misses it
            model[2].p = np.float64(0.3)
        elif change == "training":
            model[1].train(not model[1].training)
        elif change == "module":
            model.append(nn.Identity())
        elif change == "hook":
            model[3].register_forward_hook(lambda m, a, out: out)
        else:
            x = {"input": x}
            model = _KeywordModel(model)
            dropkit.mc_predict(model, x, 4)  # a new model: one pass; the same again: none
            dropkit.mc_predict(model, {"input": x["input"] + 1}, 4)
            assert len(passes) == 2
            return
        dropkit.mc_predict(model, x, 4)
        assert len(passes) == 2

    def test_an_input_it_cannot_key_is_never_cached(self, passes) -> None:
        class Box:
            def __init__(self, t: torch.Tensor) -> None:
                self.t = t

        class Unbox(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.drop = dn.Dropout(0.5)

            def forward(self, box: Box) -> torch.Tensor:
                return self.drop(box.t)

        model = Unbox()
        for _ in range(2):
            dropkit.mc_predict(model, (Box(torch.randn(3, 4)),), 4, strategy="loop")
        assert len(passes) == 2


class _KeywordModel(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.inner(input)


class TestFamiliesBeyondTheFirstFour:
    """transformers families with a pattern BERT, Llama, GPT-2 and ViT lack: each
    property the registry states is one a discovery pass observed."""

    @pytest.fixture(autouse=True)
    def _transformers(self) -> None:
        pytest.importorskip("transformers")

    def test_a_stored_rate_the_forward_never_reads_is_not_a_site(self) -> None:
        """Falcon's layers store ``hidden_dropout`` and read the config's."""
        from foreign import falcon

        m, x = falcon(p=0.3), text_batch()
        assert "transformer.h.0.hidden_dropout" in dict(dropkit.find_dropout(m))  # unseen
        found = {s.name: s for s in dropkit.dropout_sites(m, x)}
        # neither the stored rates nor the attention's nn.Dropout, which its SDPA path
        # skips (dropout_p=0.0): the one dropout is F.dropout at the config's rate
        assert [(s.kind, s.settable) for s in found.values()] == [("functional", False)] * 2
        assert all(s.rate == pytest.approx(0.3) for s in found.values())
        assert dropkit.set_rate(m, 0.5, example_input=x) == {}  # nothing reported unapplied
        assert sorted({round(r, 6) for r in _rates_seen(m, x)}) == [0.0, 0.3]
        assert dropkit.find_dropout(m) == []  # static discovery remembers what was seen

    def test_without_an_input_the_next_call_names_what_was_not_applied(self) -> None:
        from foreign import falcon

        m, x = falcon(p=0.3), text_batch()
        assert "transformer.h.0.hidden_dropout" in dropkit.set_rate(m, 0.5)  # not yet seen
        with pytest.warns(RuntimeWarning, match=r"'transformer.h.0.hidden_dropout'.* were "
                                                r"set, but .* unread"):
            m(**x)
        assert "transformer.h.0.hidden_dropout" not in dict(dropkit.find_dropout(m))
        assert "transformer.h.0.hidden_dropout" not in dropkit.set_rate(m, 0.4)

    def test_router_jitter_is_raw_noise_listed_sampled_and_named(self) -> None:
        """Mixtral's ``uniform_`` on the MoE input: no rate attribute, still a site."""
        from foreign import mixtral

        m, x = mixtral(p=0.0, jitter=0.3), text_batch()
        noise = [s for s in dropkit.dropout_sites(m, x) if s.kind == "noise"]
        assert [s.name for s in noise] == ["model.layers.0.mlp:uniform_",
                                           "model.layers.1.mlp:uniform_"]
        assert all(s.sampled and not s.shares_noise_across_batch for s in noise)
        out = dropkit.mc_predict(m, x, 4)  # the only noise: it must sample
        assert len({tuple(o.flatten().tolist()) for o in out}) == 4
        with pytest.warns(RuntimeWarning, match=r"still draw .* 'model.layers.0.mlp:uniform_'"):
            dropkit.set_rate(m, 0.0)
        with pytest.raises(ValueError, match=r"draws noise in the code of module "
                                             r"'model.layers.0.mlp'"):
            dropkit.set_rate(m, {"model.layers.0.mlp:uniform_": 0.0})

    def test_config_read_layerdrop_is_a_shared_draw_batch_refuses(self) -> None:
        """Wav2Vec2's encoder: ``torch.rand([])`` against ``self.config.layerdrop``."""
        from foreign import audio, wav2vec2

        m, x = wav2vec2(p=0.0), audio()
        m.config.layerdrop = 0.5
        (site,) = [s for s in dropkit.dropout_sites(m, x) if s.kind == "noise"]
        assert site.name == "wav2vec2.encoder:rand" and site.shares_noise_across_batch
        with pytest.raises(ValueError, match=r"strategy 'batch' cannot sample noise site "
                                             r"'wav2vec2.encoder:rand'"):
            dropkit.mc_predict(m, x, 4, strategy="batch")
        out = dropkit.mc_predict(m, x, 12)  # the loop: 4 layer patterns, all but surely > 1
        assert len({tuple(o.flatten().tolist()) for o in out}) > 1

    @pytest.mark.parametrize("hidden", [0.0, 0.2])
    def test_relative_position_attention_at_rate_0_does_not_crash(self, hidden) -> None:
        """DeBERTa-v2 at p = 0 returns a weight from ``pos_dropout``."""
        from foreign import deberta

        m, x = deberta(hidden=hidden), text_batch()
        assert dropkit.dropout_sites(m, x)
        assert dropkit.mc_predict(m, x, 3).shape == (3, 4, 3)
        with dropkit.mc_mode(m, x):
            pass
        dropkit.diagnose(m, x)

    def test_two_tower_outputs_refuse_batch_by_name(self) -> None:
        """CLIP's logits compare each image with each text of the batch."""
        from foreign import clip, image_text_batch

        m, x = clip(), image_text_batch()
        with pytest.raises(ValueError, match=r"strategy 'batch' expects .* has shape \(4, 4\)"):
            dropkit.mc_predict(m, x, 3, strategy="batch", output="logits_per_image")
        assert dropkit.mc_predict(m, x, 3, output="logits_per_image").shape == (3, 2, 2)
        m.train()
        with pytest.raises(ValueError, match=r"^rdrop_forward: strategy 'batch' expects"):
            dropkit.rdrop_forward(m, x, output="logits_per_image")
        a, b = dropkit.rdrop_forward(m, x, output="logits_per_image", strategy="loop")
        assert a.shape == b.shape == (2, 2)


class TestAProbePassThatFails:
    def test_falls_back_to_the_sites_own_modules_and_says_what_goes_unseen(self) -> None:
        class TrainOnlyFails(nn.Module):
            """A module whose training mode cannot run here (no dropout of its own)."""

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                if self.training:
                    raise RuntimeError("training mode needs a target")
                return x

        m = nn.Sequential(nn.Linear(4, 8), TrainOnlyFails(), dn.Dropout(0.5), nn.Linear(8, 2))
        with pytest.warns(RuntimeWarning, match=r"every module in training mode failed "
                                                r"\(RuntimeError: training mode needs a target"
                                                r"\).*raw noise in other modules' code is not"):
            found = dropkit.dropout_sites(m, torch.randn(3, 4))
        assert [(s.name, s.sampled) for s in found] == [("2", True)]


def test_the_discovery_cache_keeps_no_model_alive() -> None:
    """Models that are a site or a gate themselves: a bare dropout, a model whose own
    forward calls F.dropout. Built, sampled and dropped 50 times: all freed."""
    import gc
    import weakref

    refs = []
    for i in range(50):
        model = nn.Dropout(0.5) if i % 2 else FunctionalDropout(4, 0.5)
        dropkit.mc_predict(model, torch.randn(3, 4), 2)
        refs.append(weakref.ref(model))
        del model
    gc.collect()
    assert sum(r() is not None for r in refs) == 0


def test_a_site_seen_unread_is_looked_at_afresh_by_the_next_pass() -> None:
    """Static discovery remembers what a pass saw unread; a later pass looks again, so a
    changed code path (another attention implementation) brings the site back."""

    class Switch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.drop = nn.Dropout(0.3)
            self.use_module = False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc(x)
            return self.drop(h) if self.use_module else F.dropout(h, 0.2, self.training)

    m, x = Switch(), torch.randn(3, 4)
    assert [(s.name, s.kind) for s in dropkit.dropout_sites(m, x)] == [(":dropout", "functional")]
    assert dropkit.find_dropout(m) == []
    m.use_module = True
    found = dropkit.dropout_sites(m, x)
    assert [(s.name, s.kind, s.settable) for s in found] == [("drop", "module", True)]
    assert [n for n, _ in dropkit.find_dropout(m)] == ["drop"]
