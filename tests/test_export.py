"""export_mc and export_onnx: Monte Carlo dropout as one program, sampling kept on."""

import numpy as np
import pytest
import torch
from torch import nn

import dropkit
import foreign
from dropkit import seeded
from dropkit.app.models import build_model
from dropkit.inference.export import random_ops
from dropkit.inference.to_onnx import input_names
from variants import VARIANTS

ort = pytest.importorskip("onnxruntime")


def _seed(v: int) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.int64)


def _session(program, tmp_path, name="m.onnx"):
    path = tmp_path / name
    dropkit.export_onnx(program, path)
    return ort.InferenceSession(str(path))


def _feed(program, x, seed=None, offset=0):
    names = input_names(program)
    tensors = list(x.values()) if isinstance(x, dict) else [x]
    feed = {n: t.numpy() for n, t in zip(names, tensors, strict=False)}
    if seed is not None:
        feed.update(seed=np.array(seed, dtype=np.int64), offset=np.array(offset, np.int64))
    return feed


def _mlp(p=0.5):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(p), nn.Linear(32, 3)).eval()


@pytest.mark.parametrize("strategy", ["batch", "loop"])
def test_masks_are_the_seeded_stream_bit_for_bit(tmp_path, strategy):
    # a model that is one dropout: each output is x * (u < keep) / keep, u the Philox stream
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    program = dropkit.export_mc(nn.Dropout(0.3), x, samples=4, strategy=strategy)
    seed, offset = 2**40 + 3, 11
    with torch.no_grad():
        got = program.module()(x, _seed(seed), _seed(offset))
    blocks = (x.numel() + 3) // 4  # counters each pass takes in the loop
    u = (seeded.uniform(4 * x.numel(), seed=seed, offset=4 * offset) if strategy == "batch"
         else torch.cat([seeded.uniform(x.numel(), seed=seed, offset=4 * (offset + t * blocks))
                         for t in range(4)]))
    want = x.repeat(4, 1, 1) * ((u.view(4, 5, 7) < 0.7).float() / 0.7)  # as dropkit rounds
    assert torch.equal(got, want)
    served = _session(program, tmp_path).run(None, _feed(program, x, seed, offset))[0]
    assert np.array_equal(served, want.numpy())


def test_served_samples_differ_within_a_call_and_across_seeds_and_replay(tmp_path):
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    program = dropkit.export_mc(_mlp(), x, samples=8)
    session = _session(program, tmp_path)
    a = session.run(None, _feed(program, x, 5))[0]
    assert a.shape == (8, 4, 3)
    assert all(not np.array_equal(a[0], a[t]) for t in range(1, 8))
    assert np.array_equal(a, session.run(None, _feed(program, x, 5))[0])
    assert not np.array_equal(a, session.run(None, _feed(program, x, 6))[0])
    assert not np.array_equal(a, session.run(None, _feed(program, x, 5, offset=1))[0])
    # the batch size is an input of its own: 9 rows run through the same file
    nine = torch.randn(9, 6)
    assert session.run(None, _feed(program, nine, 5))[0].shape == (8, 9, 3)


def _z_max(a: np.ndarray, b: np.ndarray) -> float:
    """The largest two-sample z statistic over output elements, samples along dim 0."""
    se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
    return float((np.abs(a.mean(0) - b.mean(0)) / se).max())


def _bound(m: int, alpha: float = 1e-3) -> float:
    """The two-sided normal quantile for ``m`` tests at family-wise level ``alpha``."""
    return float(torch.distributions.Normal(0, 1).icdf(torch.tensor(1 - alpha / (2 * m))))


def _agrees_with_mc_predict(model, x, tmp_path, samples=400):
    program = dropkit.export_mc(model, x, samples=samples)
    served = _session(program, tmp_path).run(None, _feed(program, x, 3))[0]
    eager = dropkit.mc_predict(model, x, samples,
                               generator=torch.Generator().manual_seed(0)).numpy()
    assert _z_max(served, eager) < _bound(served[0].size)


def test_predictive_mean_agrees_with_mc_predict(tmp_path):
    _agrees_with_mc_predict(_mlp(), torch.randn(4, 6, generator=torch.Generator().manual_seed(2)),
                            tmp_path)


def test_batchnorm_keeps_its_running_statistics(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(16, 3))
    model.train()
    model(torch.randn(64, 6) * 3 + 1)  # running statistics far from a batch's own
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(3))
    _agrees_with_mc_predict(model, x, tmp_path)  # batch statistics would move the mean
    assert not model.training and not any(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "vit"])
def test_transformers_export_with_attention_dropout_sampling(tmp_path, family):
    # attention dropout alone: the samples differ only if fused attention's dropout samples
    model = foreign.bert(attention=0.5) if family == "bert" else foreign.vit(attention=0.5)
    x = foreign.text_batch() if family == "bert" else foreign.images()
    program = dropkit.export_mc(model, x, samples=6)
    assert not random_ops(program)  # every draw comes from the seed
    session = _session(program, tmp_path)
    served = session.run(None, _feed(program, x, 7))[0]
    with torch.no_grad():
        eager = program.module()(x, _seed(7), _seed(0)).numpy()
    assert served.shape == eager.shape and np.allclose(served, eager, atol=1e-5)
    assert all(not np.allclose(served[0], served[t]) for t in range(1, 6))
    assert np.array_equal(served, session.run(None, _feed(program, x, 7))[0])


@pytest.mark.slow
def test_bert_mean_agrees_with_mc_predict(tmp_path):
    _agrees_with_mc_predict(foreign.bert(attention=0.3, hidden=0.1), foreign.text_batch(),
                            tmp_path, samples=300)


class _Noisy(nn.Module):
    """Raw noise in a module's own code, as some models add it in training."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        h = self.fc(x)
        return h + 0.1 * torch.randn_like(h) if self.training else h


def test_raw_noise_follows_the_seed(tmp_path):
    x = torch.randn(4, 6)
    program = dropkit.export_mc(_Noisy().eval(), x, samples=3)
    session = _session(program, tmp_path)
    a = session.run(None, _feed(program, x, 1))[0]
    assert np.array_equal(a, session.run(None, _feed(program, x, 1))[0])
    assert not np.array_equal(a, session.run(None, _feed(program, x, 2))[0])
    with torch.no_grad():
        assert np.allclose(a, program.module()(x, _seed(1), _seed(0)).numpy(), atol=1e-6)


def test_runtime_draws_without_a_seed_input(tmp_path):
    x = torch.randn(4, 6)
    program = dropkit.export_mc(_mlp(), x, samples=5, seed_input=False)
    session = _session(program, tmp_path)
    assert [i.name for i in session.get_inputs()] == ["input"]
    a, b = (session.run(None, {"input": x.numpy()})[0] for _ in range(2))
    assert a.shape == (5, 4, 3) and not np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])


class _Attention(nn.Module):
    def __init__(self, need_weights):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x):
        return self.attn(x, x, x, need_weights=self.need_weights)[0]


@pytest.mark.parametrize("make", [lambda: _Attention(True), lambda: _Attention(False)],
                         ids=["mha-weights", "mha-fused"])
def test_torch_attention_samples_from_the_seed(make, tmp_path):
    # MultiheadAttention drops inside multi_head_attention_forward: a nested call
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(4))
    program = dropkit.export_mc(model, x, samples=300)
    assert not random_ops(program)
    served = _session(program, tmp_path).run(None, _feed(program, x, 3))[0]
    eager = dropkit.mc_predict(model, x, 300, generator=torch.Generator().manual_seed(0))
    assert _z_max(served, eager.numpy()) < _bound(served[0].size)


def test_torch_encoder_layer_serves(tmp_path):
    # in eval its forward takes torch's fused fast path, which has no dropout: the layer's
    # flag is a gate of its sites, switched on with them
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, 0.3, batch_first=True).eval()
    x = torch.randn(3, 5, 8)
    program = dropkit.export_mc(layer, x, samples=4)
    session = _session(program, tmp_path)
    served = session.run(None, _feed(program, x, 3))[0]
    assert not np.allclose(served[0], served[1])
    assert np.array_equal(served, session.run(None, _feed(program, x, 3))[0])


class _FixedSeed(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        return seeded.dropout(self.drop(x), 0.5, True, seed=5)  # one mask, always


class _Skips(nn.Module):
    """A layer run or skipped on a coin flip (wav2vec2's encoder LayerDrop)."""

    def __init__(self):
        super().__init__()
        self.fc, self.drop, self.block = nn.Linear(6, 6), nn.Dropout(0.2), nn.Linear(6, 6)

    def forward(self, x):
        x = self.drop(self.fc(x))
        if self.training and torch.rand(()) < 0.5:
            return x
        return self.block(x)


class _Randint(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.2)

    def forward(self, x):
        x = self.drop(x)
        if self.training:
            x = x + torch.randint(0, 2, x.shape).to(x.dtype)
        return x


@pytest.mark.parametrize("make, kwargs, words", [
    (lambda: dropkit.nn.LayerDrop([nn.Linear(6, 6)] * 2, p=0.5), {},
     "site 'p' (LayerDrop.p): it skips whole blocks"),
    (_Skips, {}, "the model's own forward (_Skips): its code branches"),
    (_Randint, {}, "draws with aten::randint"),
    (_FixedSeed, {}, "the model's own forward (_FixedSeed) calls dropkit.seeded with a seed"),
    (lambda: nn.Sequential(nn.Linear(6, 3)), {}, "no dropout to sample"),
    (_mlp, {"strategy": "vmap"}, "got 'vmap'"),
    (lambda: nn.Sequential(dropkit.nn.DropConnectLinear(6, 3, p=0.3)), {"strategy": "batch"},
     "strategy 'batch' cannot sample"),
    (_mlp, {"samples": 0}, "samples"),
])
def test_refused_by_name(make, kwargs, words):
    model = make().eval()
    with pytest.raises((ValueError, TypeError)) as error:
        dropkit.export_mc(model, torch.randn(4, 6), **kwargs)
    assert words in str(error.value)
    assert not any(m.training for m in model.modules())


def test_drop_connect_exports_as_a_loop(tmp_path):
    # one weight mask per pass serves the whole batch: tiling would share it, so auto loops
    torch.manual_seed(0)
    model = nn.Sequential(dropkit.nn.DropConnectLinear(6, 3, p=0.3)).eval()
    x = torch.randn(4, 6)
    program = dropkit.export_mc(model, x, samples=4)
    served = _session(program, tmp_path).run(None, _feed(program, x, 2))[0]
    assert not np.allclose(served[0], served[1])


def test_pt2_round_trip(tmp_path):
    x = torch.randn(4, 6)
    program = dropkit.export_mc(_mlp(), x, samples=3)
    torch.export.save(program, tmp_path / "m.pt2")
    loaded = torch.export.load(tmp_path / "m.pt2")
    with torch.no_grad():
        assert torch.equal(loaded.module()(x, _seed(4), _seed(0)),
                           program.module()(x, _seed(4), _seed(0)))


def _serves(model, x, tmp_path):
    """Exported, run in onnxruntime: the eager program's samples, which differ."""
    program = dropkit.export_mc(model, x, samples=4)
    served = _session(program, tmp_path).run(None, _feed(program, x, 2))[0]
    with torch.no_grad():
        eager = program.module()(x, _seed(2), _seed(0)).numpy()
    assert served.shape == eager.shape and np.allclose(served, eager, atol=1e-5)
    assert not np.allclose(served[0], served[1])


@pytest.mark.slow
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.module is not None],
                         ids=lambda v: v.name)
def test_every_variant_serves(variant, tmp_path):
    torch.manual_seed(0)
    _serves(variant.module(0.3).eval(), torch.randn(*variant.shape), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp-dropconnect", "cnn-element", "lstm", "resmlp"])
def test_dropkits_models_serve(name, tmp_path):
    torch.manual_seed(0)
    images = (1, 28, 28) if name.startswith(("cnn", "lstm")) else None
    model = build_model(name, n_features=784, n_outputs=10, image_shape=images, hidden=32)
    _serves(model.eval(), torch.rand(3, 784), tmp_path)


def test_layerdrop_inside_a_model_is_refused_by_name():
    model = build_model("resmlp", n_features=784, n_outputs=10, hidden=32, layerdrop=0.2)
    with pytest.raises(ValueError, match="LayerDrop.p\\): it skips whole blocks"):
        dropkit.export_mc(model.eval(), torch.rand(3, 784))
