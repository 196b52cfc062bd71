"""mc_graph: Monte Carlo dropout replayed from a CUDA graph. The checks that need no GPU
run everywhere; the capture itself runs where CUDA is (the GPU run of
benchmarks/gpu_issue30.sh runs this file)."""

import pytest
import torch
from torch import nn

import dropkit
import dropkit.nn as dn
from conftest import assert_binomial, gen
from dropkit.errors import UsageError
from dropkit.inference import graphed
from dropkit.inference.graphed import HostDraw, WatchHostDraws, mc_graph
from dropkit.inference.mc import check_one_path
from dropkit.inference.sampling.strategies import by_vmap
from dropkit.tools.sites import dropout_sites

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _mlp(p: float = 0.5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(p), nn.Linear(32, 3)).eval()


class TestRefusedBeforeAnything:
    def test_a_model_on_the_cpu_is_named(self) -> None:
        model = _mlp()
        before = [m.training for m in model.modules()]
        with pytest.raises(UsageError, match=r"^mc_graph: expected the model on a CUDA device "
                                             r"\(a CUDA graph records GPU kernels\), got its "
                                             r"parameters on cpu$"):
            mc_graph(model, torch.randn(4, 6))
        assert [m.training for m in model.modules()] == before

    @pytest.mark.parametrize("kwargs, message", [
        ({"samples": 0}, "expected `samples` to be"),
        ({"strategy": "fast"}, r"expected `strategy` to be one of \('auto', 'vmap'"),
        ({"output": 3}, "expected `output` to be None, a str or a callable, got int"),
    ])
    def test_bad_arguments(self, kwargs: dict, message: str) -> None:
        with pytest.raises(UsageError, match=message):
            mc_graph(_mlp(), torch.randn(4, 6), **kwargs)

    def test_a_nested_input_is_named(self) -> None:
        with pytest.raises(TypeError, match=r"^mc_graph: expected each input to be a tensor "
                                            r"or a plain value .* got list at 'past'$"):
            graphed._leaves("mc_graph", {"x": torch.ones(2), "past": [torch.ones(2)]})

    def test_layerdrop_is_refused_by_name(self) -> None:
        model = dn.LayerDrop([nn.Linear(4, 4), nn.Linear(4, 4)], p=0.5)
        active = [s for s in dropout_sites(model) if s.draws]
        with pytest.raises(UsageError, match=r"^mc_graph: cannot capture attribute site 'p' "
                                             r"\(LayerDrop.p\): it skips whole blocks .* a "
                                             r"CUDA graph has one fixed path"):
            check_one_path("mc_graph", active, "capture", "a CUDA graph")


class TestLayout:
    @pytest.mark.parametrize("x", [
        torch.ones(2, 3),
        (torch.ones(2, 3), 4),
        {"input_ids": torch.ones(2, 3, dtype=torch.long), "return_dict": True},
        graphed.CallArgs((torch.ones(2),), {"mask": None}),
    ])
    def test_rebuilt_in_the_inputs_structure(self, x) -> None:
        values = [v for _, v in graphed._leaves("mc_graph", x)]
        back = graphed._rebuilt(x, values)
        assert type(back) is type(x) or (isinstance(x, dict) and isinstance(back, dict))
        assert graphed._layout(graphed._leaves("mc_graph", back)) == graphed._layout(
            graphed._leaves("mc_graph", x))

    def test_another_batch_size_names_both(self) -> None:
        had = graphed._layout(graphed._leaves("mc_graph", {"ids": torch.ones(4, 7)}))
        got = graphed._layout(graphed._leaves("mc_graph", {"ids": torch.ones(3, 7)}))
        assert graphed._difference(had, got) == (
            "expected 'ids' to be a float32 tensor of shape (4, 7) on cpu, got a float32 "
            "tensor of shape (3, 7) on cpu")

    def test_a_plain_value_and_the_arguments_are_part_of_it(self) -> None:
        def lay(x):
            return graphed._layout(graphed._leaves("mc_graph", x))

        assert graphed._difference(lay((torch.ones(2), 1)), lay((torch.ones(2), 2))) == (
            "expected argument 1 to be 1, got 2")
        assert graphed._difference(lay({"a": torch.ones(2)}), lay({"b": torch.ones(2)})) == (
            "expected the arguments [\"'a'\"], got [\"'b'\"]")


class TestState:
    """What a replay reads without checking, and what makes a call capture again."""

    def test_a_rate_set_anew_and_moved_parameters_change_it(self) -> None:
        model = _mlp()
        sites = dropout_sites(model)
        before = graphed._state(model, sites)
        with torch.no_grad():
            model[0].weight.add_(1.0)  # an optimizer step: read by the replay as it is
        assert graphed._state(model, sites) == before
        dropkit.set_rate(model, 0.2)
        assert graphed._state(model, sites) != before
        dropkit.set_rate(model, 0.5)
        assert graphed._state(model, sites) == before
        model.double()  # new storage for every parameter
        assert graphed._state(model, sites) != before


class TestHostDraws:
    """The watch over random ops during a capture, run here without one: a draw off the
    watched device is refused, under vmap too, and names the module that drew."""

    def test_a_draw_off_the_device_is_caught_under_vmap(self) -> None:
        model, x = _mlp().train(), torch.randn(3, 6)
        with torch.no_grad(), pytest.raises(HostDraw, match="aten::rand_like drew on cpu"), \
                WatchHostDraws(torch.device("meta")):
            by_vmap(model, x, 5, None, None)

    def test_draws_on_the_device_and_other_ops_pass(self) -> None:
        model, x = _mlp().train(), torch.randn(3, 6)
        with torch.no_grad(), WatchHostDraws(torch.device("cpu")):
            out = by_vmap(model, x, 5, None, None)
        assert out.shape == (5, 3, 3)

    def test_the_error_names_the_module_and_the_remedy(self) -> None:
        class Noisy(nn.Module):
            def forward(self, x):
                return x + torch.randn(x.shape)

        model, x = nn.Sequential(nn.Linear(6, 6), Noisy()), torch.randn(2, 6)
        try:
            with torch.no_grad(), WatchHostDraws(torch.device("meta")):
                model(x)
        except HostDraw as caught:
            error = caught
        wrapped = graphed._uncapturable(model, "loop", RuntimeError("capture ended"),
                                        torch.device("cuda:0"))
        assert isinstance(wrapped, RuntimeError)  # no HostDraw in its chain
        try:
            try:
                raise error
            finally:
                raise RuntimeError("the graph's own error on exit")
        except RuntimeError as outer:
            wrapped = graphed._uncapturable(model, "loop", outer, torch.device("cuda:0"))
        assert isinstance(wrapped, UsageError)
        assert str(wrapped).startswith(
            "mc_graph: module '1' (Noisy) draws with aten::randn on cpu, off the graph's "
            "device cuda:0: a CUDA graph would record that noise once")


class TestSeededBackendInACapture:
    """Inside a CUDA graph's capture a seed read on the host would be replayed: the seed
    is drawn on the input's device and the kernel reads it there, or the torch path
    draws where the kernel cannot (CUDA tensors stood in for: the CPU cannot capture)."""

    class Cuda:  # what _seeded and _new_seed read of an input, as a CUDA tensor reports it
        is_cuda = True
        device = torch.device("cpu")  # where the seed is drawn here

        def __init__(self, dtype: torch.dtype = torch.float32) -> None:
            self.dtype = dtype

        def numel(self) -> int:
            from dropkit.nn import _base

            return _base.AUTO_SEEDED_MIN_NUMEL

    @pytest.fixture
    def capturing(self, monkeypatch):
        from dropkit.nn import _base

        monkeypatch.setattr(_base, "HAS_TRITON", True)
        monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)

    @pytest.mark.usefixtures("capturing")
    def test_the_kernel_path_stays_where_it_can_read_the_seed(self) -> None:
        assert dn.Dropout(0.5, backend="seeded")._seeded(self.Cuda())
        assert dn.Dropout(0.5, backend="auto")._seeded(self.Cuda())
        assert not dn.Dropout(0.5, backend="torch")._seeded(self.Cuda())
        # no kernel for float64; a generator of its own is not the graph's
        assert not dn.Dropout(0.5, backend="seeded")._seeded(self.Cuda(torch.float64))
        assert not dn.Dropout(0.5, backend="seeded", generator=gen(1))._seeded(self.Cuda())

    @pytest.mark.usefixtures("capturing")
    def test_the_seed_is_drawn_on_the_inputs_device_from_torchs_generator(self) -> None:
        m = dn.Dropout(0.5, backend="seeded")
        torch.manual_seed(3)
        a = m._new_seed(self.Cuda())
        torch.manual_seed(3)
        b = m._new_seed(self.Cuda())
        assert a.dtype == torch.int64 and a.dim() == 0 and a.device == self.Cuda.device
        assert torch.equal(a, b) and not torch.equal(a, m._new_seed(self.Cuda()))

    def test_the_warm_up_draws_as_the_capture_will(self, monkeypatch) -> None:
        from dropkit.nn import _base

        monkeypatch.setattr(_base, "HAS_TRITON", True)
        monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
        m = dn.Dropout(0.5, backend="seeded", generator=gen(1))
        assert not _base._capturing(self.Cuda())
        with dropkit.mask.seeds_on_device():
            assert _base._capturing(self.Cuda()) and not _base._capturing(torch.ones(2))
            assert not m._seeded(self.Cuda())  # its own generator: the torch path
        assert not _base._capturing(self.Cuda())

    def test_outside_a_capture_the_seed_is_read_on_the_host(self, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
        seed = dn.Dropout(0.5, backend="seeded", generator=gen(1))._new_seed(self.Cuda())
        assert seed.device.type == "cpu"
        assert torch.equal(seed, dn.Dropout(0.5, backend="seeded", generator=gen(1))
                           ._new_seed(self.Cuda()))


@pytest.fixture
def stubbed(monkeypatch):
    """torch.cuda's graph API stood in for on the CPU: a replay launches nothing."""
    import contextlib

    class Graph:
        replays = 0

        def replay(self) -> None:
            Graph.replays += 1

    class Stream:
        def __init__(self, *args) -> None:
            pass

        def wait_stream(self, other) -> None:
            pass

    def none(*args):
        return contextlib.nullcontext()

    for name, value in (("CUDAGraph", Graph), ("Stream", Stream), ("graph", none),
                        ("stream", none), ("device", none),
                        ("current_stream", lambda *a: Stream()),
                        ("synchronize", lambda *a: None)):
        monkeypatch.setattr(torch.cuda, name, value)
    monkeypatch.setattr(graphed, "_check_device", lambda fn, model, x, named:
                        torch.device("cpu"))
    monkeypatch.setattr(graphed, "_check_replays", lambda graph, out, active: None)
    return Graph


class TestControlFlowWithTheGraphApiStubbed:
    """mc_graph's own logic on the CPU, torch.cuda's graph API stood in for: a replay here
    launches nothing (the GPU tests below check what replays draw). What is checked: the
    strategies recorded and the one kept, the input copied in, a recapture where a rate
    changed, the layout check, and the refusals' order."""

    def test_auto_records_every_timed_strategy_and_keeps_one(self, stubbed) -> None:
        model, x = _mlp(), torch.randn(16, 6)
        graph = mc_graph(model, x, samples=8)
        assert set(graph.seconds) == {"vmap", "batch", "loop"}
        assert graph.strategy == min(graph.seconds, key=graph.seconds.get)
        assert graph(torch.randn(16, 6)).shape == (8, 16, 3) and graph.captures == 1
        explicit = mc_graph(model, x, samples=8, strategy="loop")
        assert (explicit.strategy, explicit.seconds) == ("loop", {})

    def test_the_input_is_copied_in_and_the_example_left_alone(self, stubbed) -> None:
        model, x = _mlp(), torch.randn(16, 6)
        graph = mc_graph(model, x, samples=4, strategy="loop")
        y = torch.randn(16, 6)
        graph(y)
        assert torch.equal(graph._inputs[0], y) and not torch.equal(graph._inputs[0], x)

    def test_a_rate_set_anew_captures_again(self, stubbed) -> None:
        model, x = _mlp(), torch.randn(16, 6)
        graph = mc_graph(model, x, samples=4, strategy="vmap")
        graph(x)
        assert graph.captures == 1
        dropkit.set_rate(model, 0.2)
        graph(x)
        assert graph.captures == 2
        graph(x)
        assert graph.captures == 2

    def test_another_layout_is_refused_before_anything_runs(self, stubbed) -> None:
        model, x = _mlp(), torch.randn(16, 6)
        graph = mc_graph(model, x, samples=4, strategy="loop")
        replays = stubbed.replays
        with pytest.raises(UsageError, match=r"^mc_graph: expected the input layout it was "
                                             r"captured with; expected argument 0 to be a "
                                             r"float32 tensor of shape \(16, 6\)"):
            graph(torch.randn(15, 6))
        assert stubbed.replays == replays

    def test_layerdrop_is_refused_after_the_eager_check(self, stubbed) -> None:
        model = dn.LayerDrop([nn.Linear(4, 4), nn.Linear(4, 4)], p=0.5)
        with pytest.raises(UsageError, match="cannot capture attribute site 'p'"):
            mc_graph(model, torch.ones(8, 4), samples=16)

    def test_a_host_draw_is_refused_by_the_module_that_drew(self, stubbed,
                                                             monkeypatch) -> None:
        class HostNoise(nn.Module):
            def forward(self, x):
                return x + torch.randn(x.shape).to(x.device)

        watch = graphed.WatchHostDraws.__init__
        # the "GPU" of the stub is the CPU: every draw off a meta device counts as off it
        monkeypatch.setattr(graphed.WatchHostDraws, "__init__",
                            lambda self, device: watch(self, torch.device("meta")))
        model = nn.Sequential(nn.Linear(4, 4), HostNoise()).eval()  # one site: raw noise
        with pytest.raises(UsageError, match=r"^mc_graph: module '1' \(HostNoise\) draws "
                                             r"with aten::randn on cpu"):
            mc_graph(model, torch.ones(8, 4), samples=4, strategy="loop")


class TestForeignModelsWithTheGraphApiStubbed:
    """Models dropkit did not write: a transformers BERT from a config (its attention
    dropout inside SDPA, rerouted under vmap), and a block that skips itself on a draw
    made in Python, as transformers' config-read layerdrop (Wav2Vec2's encoder) does."""

    def test_a_transformers_bert(self, stubbed) -> None:
        transformers = pytest.importorskip("transformers")
        torch.manual_seed(0)
        cfg = transformers.BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=32, num_labels=3,
            attention_probs_dropout_prob=0.3, hidden_dropout_prob=0.3)
        model = transformers.BertForSequenceClassification(cfg).eval()
        batch = {"input_ids": torch.randint(2, 50, (4, 7)),
                 "attention_mask": torch.ones(4, 7, dtype=torch.long)}
        graph = mc_graph(model, batch, samples=6)
        assert graph.strategy in graph.seconds and set(graph.seconds) <= {"vmap", "batch",
                                                                          "loop"}
        assert graph(batch).shape == (6, 4, 3) and not model.training
        with pytest.raises(UsageError, match=r"expected 'input_ids' to be a int64 tensor of "
                                             r"shape \(4, 7\)"):
            graph({**batch, "input_ids": batch["input_ids"][:, :5]})

    def test_a_layer_skipped_on_a_python_draw_is_refused_by_name(self, stubbed,
                                                                 monkeypatch) -> None:
        class SkippedLayer(nn.Module):  # transformers' layerdrop, as its encoders write it
            def __init__(self) -> None:
                super().__init__()
                self.linear = nn.Linear(4, 4)

            def forward(self, x):
                if self.training and torch.rand([]) < 0.5:
                    return x
                return self.linear(x)

        watch = graphed.WatchHostDraws.__init__
        monkeypatch.setattr(graphed.WatchHostDraws, "__init__",
                            lambda self, device: watch(self, torch.device("meta")))
        model = nn.Sequential(SkippedLayer(), SkippedLayer()).eval()
        with pytest.raises(UsageError, match=r"^mc_graph: module '\d' \(SkippedLayer\) "
                                             r"draws with aten::rand on cpu.*layerdrop"):
            mc_graph(model, torch.ones(8, 4), samples=16, strategy="loop")


# ---- on a GPU -----------------------------------------------------------------------


def _dropout_only(module: nn.Module) -> tuple[nn.Module, torch.Tensor]:
    """A model that is one dropout on ones: each output element is 0 or 1 / (1 - p)."""
    return nn.Sequential(nn.Identity(), module).cuda().eval(), torch.ones(64, 32,
                                                                            device="cuda")


@cuda
@pytest.mark.parametrize("strategy", ["auto", "vmap", "batch", "loop"])
@pytest.mark.parametrize("make", [lambda: nn.Dropout(0.3),
                                  lambda: dn.Dropout(0.3, backend="seeded"),
                                  lambda: dn.Dropout(0.3, backend="torch")],
                         ids=["torch.nn", "seeded", "dropkit-torch"])
def test_each_replay_draws_fresh_masks_at_the_rate(strategy, make) -> None:
    model, x = _dropout_only(make())
    graph = mc_graph(model, x, samples=8, strategy=strategy)
    torch.cuda.manual_seed(0)
    first, second = graph(x), graph(x)
    assert first.shape == (8, 64, 32) and not torch.equal(first, second)
    for out in (first, second):
        kept = out[out != 0]
        assert torch.allclose(kept, torch.full_like(kept, 1 / 0.7))
        assert_binomial(int((out == 0).sum()), out.numel(), 0.3)
    assert graph.captures == 1 and not model.training


@cuda
def test_manual_seed_makes_a_call_repeatable() -> None:
    model, x = _dropout_only(nn.Dropout(0.5))
    graph = mc_graph(model, x, samples=4)
    torch.cuda.manual_seed(7)
    a = graph(x)
    torch.cuda.manual_seed(7)
    assert torch.equal(a, graph(x))


@cuda
def test_the_input_is_read_at_each_call_and_the_layout_checked() -> None:
    model = _mlp().cuda()
    graph = mc_graph(model, torch.randn(16, 6, device="cuda"), samples=400)
    y = torch.randn(16, 6, device="cuda")
    out = graph(y)
    with torch.no_grad():
        want = model(y)  # inverted dropout before a linear layer: the samples' mean
    bound = 5 * out.std(0) / 400**0.5  # 5 sigma for each of the 48 outputs
    assert ((out.mean(0) - want).abs() <= bound).all()
    with pytest.raises(UsageError, match=r"expected argument 0 to be a float32 tensor of "
                                         r"shape \(16, 6\) on cuda:0, got .* \(15, 6\)"):
        graph(y[:15])


@cuda
def test_a_rate_set_anew_is_applied_by_a_new_capture() -> None:
    model, x = _dropout_only(nn.Dropout(0.5))
    graph = mc_graph(model, x, samples=8)
    dropkit.set_rate(model, 0.1)
    out = graph(x)
    assert graph.captures == 2
    assert_binomial(int((out == 0).sum()), out.numel(), 0.1)


@cuda
def test_a_host_draw_in_the_model_is_refused_by_name() -> None:
    class HostNoise(nn.Module):
        def forward(self, x):
            return x + torch.randn(x.shape).to(x.device)

    model = nn.Sequential(nn.Dropout(0.5), HostNoise()).cuda().eval()
    with pytest.raises((UsageError, RuntimeError), match=r"^mc_graph: module '1' \(HostNoise\)"):
        mc_graph(model, torch.ones(8, 4, device="cuda"), samples=4)


@cuda
def test_layerdrop_is_refused_on_the_gpu() -> None:
    model = dn.LayerDrop([nn.Linear(4, 4), nn.Linear(4, 4)], p=0.5).cuda()
    # 16 samples: the eager call's samples, 4 paths in all, are then alike with
    # probability 4 ** -15, and its refusal of identical samples cannot stand in front
    with pytest.raises(UsageError, match="cannot capture attribute site 'p'"):
        mc_graph(model, torch.ones(8, 4, device="cuda"), samples=16)


@cuda
def test_a_users_own_capture_of_a_seeded_module_draws_anew_at_each_replay() -> None:
    # torch's recipe: warm-up on a side stream (here the host-seed path runs), then the
    # capture, where the seed is drawn on the GPU and read there by the kernel
    module, x = dn.Dropout(0.3, backend="seeded").cuda(), torch.ones(64, 32, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(3):
            module(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        out = module(x)
    graph.replay()
    first = out.clone()
    graph.replay()
    assert not torch.equal(first, out)
    for sample in (first, out):
        assert_binomial(int((sample == 0).sum()), sample.numel(), 0.3)
