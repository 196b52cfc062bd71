"""Monte Carlo prediction: the T-pass loop against each mc_predict strategy, as ratios.

Run::

    .venv/bin/python benchmarks/bench_mc_predict.py                  # full, on the CPU
    .venv/bin/python benchmarks/bench_mc_predict.py --quick          # a smoke run
    python benchmarks/bench_mc_predict.py --device cuda              # the GPU models below

On the CPU, T = 50 samples of a batch of 256 through these models:

* ``trunk``: a BatchNorm trunk (784-512-512, BatchNorm + ReLU), a residual block with
  dropout, and dropout before the classifier.
* ``head``: a 3-layer MLP (784-1024-1024-10) with dropout only before its last layer,
  where the shared prefix is nearly the whole network.
* ``bert`` (when transformers is installed): a BERT built from a config (2 layers,
  hidden 128, SDPA attention with dropout 0.1), a batch of 32 sequences of 64 tokens.
* ``gpt2``: a GPT-2 of the same size, every other sequence left-padded.
* ``bert-tiny``: a BERT at the size of the tests' (hidden 16), 4 sequences of 7 tokens:
  host work alone, where the loop's per-call overhead decides.

``auto`` times the strategies on its first call (the warm-up) and keeps the fastest; the
closing lines give auto / best strategy for each model (the target: within 10%).

With ``--device cuda``, T = 50 samples of a batch of 512 through a 784-2048-2048-2048-10
MLP (``mlp-head``: dropout 0.5 before the classifier only, where the prefix shared by
every sample is nearly the whole network; ``mlp-every``: dropout 0.1 after each hidden
layer), each with the torch and the seeded dropout backend, and the BERT.

``loop`` is the common ``mc_dropout_predict`` recipe: T forward passes (run here under
``mc_mode``, so that it does not corrupt BatchNorm as ``model.train()`` would). Every
strategy includes ``mc_predict``'s discovery pass (``dropkit.dropout_sites`` on the
input); the ``discovery`` row times that pass alone. For the head-only models, the
``prefix-once, hand-written`` row is the floor ``mc_predict`` aims at: the layers before
the dropout once, then dropout and the classifier on T expanded copies, written for that
model alone (no discovery, no checks). Each variant runs interleaved with the others;
the table gives medians and loop / variant. On a GPU, the ``mc_graph`` row replays
each model's samples from a CUDA graph (:func:`dropkit.mc_graph`, captured once before
the rounds: its strategy is the one whose replay timed fastest).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections.abc import Callable

import torch
from bench_mlp_step import machine
from torch import nn

import dropkit
import dropkit.nn as dn


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.drop = dn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(torch.relu(self.fc(x)))


def trunk_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 512), nn.BatchNorm1d(512), nn.ReLU(),
        nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(),
        Residual(512), dn.Dropout(0.5), nn.Linear(512, 10),
    ).eval()


def head_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
        dn.Dropout(0.5), nn.Linear(1024, 10),
    ).eval()


def gpu_mlp(every: bool, backend: str, width: int = 2048) -> nn.Sequential:
    """The issue's 3 x 2048 MLP: dropout in every hidden layer, or only before the head."""
    layers: list[nn.Module] = []
    for i, fan_in in enumerate((784, width, width)):
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        if every or i == 2:
            layers.append(dn.Dropout(0.1 if every else 0.5, backend=backend))
    return nn.Sequential(*layers, nn.Linear(width, 10)).eval()


def bert_model() -> tuple[nn.Module, dict[str, torch.Tensor]] | None:
    try:
        from transformers import BertConfig, BertForSequenceClassification
    except ImportError:
        return None
    cfg = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=256, hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.1)
    batch = {"input_ids": torch.randint(0, 1000, (32, 64)),
             "attention_mask": torch.ones(32, 64, dtype=torch.long)}
    return BertForSequenceClassification(cfg).eval(), batch


def gpt2_model() -> tuple[nn.Module, dict[str, torch.Tensor]] | None:
    """A GPT-like causal LM (2 layers, hidden 128, attention, residual and embedding
    dropout 0.1), 32 sequences of 64 tokens with left padding."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return None
    cfg = GPT2Config(vocab_size=1000, n_embd=128, n_layer=2, n_head=4, n_positions=64,
                     attn_pdrop=0.1, resid_pdrop=0.1, embd_pdrop=0.1)
    mask = torch.ones(32, 64, dtype=torch.long)
    mask[::2, :8] = 0  # every other sequence left-padded by 8 tokens
    batch = {"input_ids": torch.randint(0, 1000, (32, 64)), "attention_mask": mask}
    return GPT2LMHeadModel(cfg).eval(), batch


def tiny_bert_model() -> tuple[nn.Module, dict[str, torch.Tensor]] | None:
    """BERT at the size of the tests' models (hidden 16, 2 layers), 4 sequences of 7
    tokens: every pass is host work, where the loop's per-call overhead decides."""
    try:
        from transformers import BertConfig, BertForSequenceClassification
    except ImportError:
        return None
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, num_labels=3,
                     attention_probs_dropout_prob=0.3, hidden_dropout_prob=0.3)
    batch = {"input_ids": torch.randint(2, 50, (4, 7)),
             "attention_mask": torch.ones(4, 7, dtype=torch.long)}
    return BertForSequenceClassification(cfg).eval(), batch


def cases_for(device: torch.device) -> tuple[int, list[tuple[str, nn.Module, object]]]:
    """(batch, [(label, model, inputs)]) for the device: the CPU's models or the GPU's."""
    batch = 512 if device.type == "cuda" else 256
    x = torch.randn(batch, 784)
    cases: list[tuple[str, nn.Module, object]]
    if device.type == "cuda":
        cases = [(f"mlp-{where}, {backend}", gpu_mlp(where == "every", backend), x)
                 for where in ("head", "every") for backend in ("torch", "seeded")]
    else:
        cases = [("trunk", trunk_model(), x), ("head", head_model(), x)]
    for label, make in (("bert", bert_model), ("gpt2", gpt2_model),
                        ("bert-tiny", tiny_bert_model)):
        built = make()
        if built is not None:
            cases.append((label, *built))
    return batch, [(label, model.to(device), _to(inputs, device))
                   for label, model, inputs in cases]


STRATEGIES = ("loop", "batch", "vmap", "auto", "discovery")
HAND = "prefix-once, hand-written"
GRAPH = "mc_graph (CUDA graph replay)"
HEAD_TARGET = 20  # on a GPU, with dropout in the head only (the GPU issue's target)


def _to(inputs: object, device: torch.device) -> object:
    if isinstance(inputs, dict):
        return {k: v.to(device) for k, v in inputs.items()}
    assert isinstance(inputs, torch.Tensor)
    return inputs.to(device)


def _no_grad(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m(x)


def _prefix_once(model: nn.Sequential, x: torch.Tensor, samples: int) -> torch.Tensor:
    """What ``mc_predict`` does for a head-only model, written for that model alone: the
    layers before the dropout once, then dropout and the classifier on T copies."""
    with torch.no_grad():
        h = model[:-2](x)
        return model[-1](torch.nn.functional.dropout(h.expand(samples, *h.shape), 0.5))


def host_costs(device: torch.device, host_only: bool = False) -> None:
    """Host time per call of each dropout path on a tiny tensor (the GPU idle: launch
    and dispatch work alone), and a profile of the seeded loop: where the time of a
    T-pass loop over a seeded model goes."""
    import cProfile
    import pstats

    from dropkit import seeded

    x = torch.randn(8, 8, device=device)
    xr = x.clone().requires_grad_(True)
    seed = torch.tensor(3)
    modules = {backend: dn.Dropout(0.1, backend=backend).train()
               for backend in ("torch", "seeded")}
    graphs = {backend: m(xr) for backend, m in modules.items()}
    paths: dict[str, Callable[[], object]] = {
        "torch.nn.functional.dropout": lambda: torch.nn.functional.dropout(x, 0.1),
        "seeded.dropout, a seed given": lambda: seeded.dropout(x, 0.1, seed=seed),
        "seeded.new_seed": lambda: seeded.new_seed(),
    }
    for backend, m in modules.items():
        paths[f"dropkit.nn.Dropout ({backend} backend), no grad"] = (
            lambda m=m: _no_grad(m, x))
        paths[f"dropkit.nn.Dropout ({backend} backend), forward with grad"] = (
            lambda m=m: m(xr))
        paths[f"dropkit.nn.Dropout ({backend} backend), its backward"] = (
            lambda y=graphs[backend]: y.backward(torch.ones_like(y), retain_graph=True))
    if device.type == "cuda":
        from dropkit.seeded import kernels, ops

        out = torch.empty_like(x)
        paths["the seeded Triton kernel's launch alone"] = (
            lambda: kernels.mask_affine_kernel[kernels.grid(x.numel(), 0, ops.BLOCK)](
                x, out, x.numel(), 0.1, 1 / 0.9, 0.0, 0.0, 3, 0, BLOCK=ops.BLOCK,
                AFFINE=False, **kernels.LAUNCH))
    tiny, rows = gpu_mlp(False, "torch", width=8).to(device), torch.randn(8, 784, device=device)
    paths["mc_predict, T = 50, a width-8 MLP with dropout before its head (auto)"] = (
        lambda: dropkit.mc_predict(tiny, rows, 50))
    paths["a hand-written prefix-once sampler of that MLP"] = lambda: _prefix_once(tiny, rows, 50)
    if device.type == "cuda":
        try:
            graph = dropkit.mc_graph(tiny, rows, 50)
            paths["mc_graph's call on that MLP (a replay of a CUDA graph)"] = (
                lambda: graph(rows))
        except Exception as error:  # noqa: BLE001 - one row lost, not the run
            print(f"mc_graph failed on the width-8 MLP: {type(error).__name__}: {error}")
    print("| path | host time per call (us) |")
    print("|---|---:|")
    for label, fn in paths.items():
        for _ in range(20):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(500):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        print(f"| {label} | {(time.perf_counter() - start) / 500 * 1e6:.1f} |")
    if host_only:
        return
    for every, backend, strategy in ((True, "seeded", "loop"), (False, "torch", "vmap")):
        model = gpu_mlp(every, backend).to(device)
        inputs = torch.randn(512, 784, device=device)
        dropkit.mc_predict(model, inputs, 50, strategy=strategy)
        profile = cProfile.Profile()
        profile.enable()
        dropkit.mc_predict(model, inputs, 50, strategy=strategy)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        profile.disable()
        print(f"\nprofile: mlp-{'every' if every else 'head'}, {backend}, {strategy}")
        pstats.Stats(profile).sort_stats("tottime").print_stats(14)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--host-only", action="store_true",
                        help="only the host's cost per dropout call and per mc_predict call "
                             "on a tiny model")
    parser.add_argument("--profile", action="store_true",
                        help="then the host's cost per dropout call and a profile of the "
                             "seeded loop")
    args = parser.parse_args()
    device = torch.device(args.device)
    rounds = 2 if args.quick else 7
    torch.manual_seed(0)
    samples = 50
    if args.host_only:
        host_costs(device, host_only=True)
        return
    batch, cases = cases_for(device)
    where = (f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
             f"{datetime.date.today().isoformat()}" if device.type == "cuda" else machine())
    print(f"{where}; T = {samples}, batch {batch}")
    print()
    print("| model | strategy | median (ms) | loop / strategy |")
    print("|---|---|---:|---:|")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    graphs: dict[int, dropkit.MCGraph] = {}

    def run(model: nn.Module, inputs: object, s: str) -> None:
        if s == GRAPH:
            graphs[id(model)](inputs)
        elif s == "discovery":
            dropkit.dropout_sites(model, inputs)
        elif s == HAND:
            assert isinstance(model, nn.Sequential) and isinstance(inputs, torch.Tensor)
            _prefix_once(model, inputs, samples)
        else:
            dropkit.mc_predict(model, inputs, samples, strategy=s)

    verdicts: list[str] = []
    shown = 0
    for label, model, inputs in cases:
        # each model's verdicts at once on stderr too: a run cut off by its time limit
        # keeps the lines of the models it finished (the summary below repeats them)
        for line in verdicts[shown:]:
            print(line, file=sys.stderr, flush=True)
        shown = len(verdicts)
        # dropout only before the classifier: the hand-written sampler applies
        strategies = [*STRATEGIES, HAND] if "head" in label else list(STRATEGIES)
        if device.type == "cuda":  # captured once here, its first call a plain replay
            start = time.perf_counter()
            try:
                graphs[id(model)] = dropkit.mc_graph(model, inputs, samples)
                strategies.append(GRAPH)
            except Exception as error:  # noqa: BLE001 - one row lost, not the run
                verdicts.append(f"{label}: mc_graph failed: {type(error).__name__}: {error}")
            captured = time.perf_counter() - start
        times: dict[str, list[float]] = {s: [] for s in strategies}
        first: dict[str, float] = {}
        for s in strategies:  # warm-up; auto's times the strategies (discovery is cached)
            sync()
            start = time.perf_counter()
            run(model, inputs, s)
            sync()
            first[s] = time.perf_counter() - start
        for r in range(rounds):
            for s in strategies if r % 2 == 0 else strategies[::-1]:
                sync()
                start = time.perf_counter()
                run(model, inputs, s)
                sync()
                times[s].append(time.perf_counter() - start)
        med = {s: statistics.median(t) for s, t in times.items()}
        for s in strategies:
            print(f"| {label} | {s} | {med[s] * 1e3:.1f} | {med['loop'] / med[s]:.2f} |")
        best = min(("loop", "batch", "vmap"), key=lambda n: med[n])
        dropkit.mc_predict(model, inputs, samples)  # the cached choice, to name it
        last = dropkit.inference.mc.last_choice
        chosen = last.strategy if last else "?"
        verdicts.append(f"{label}: auto (chose {chosen}) {med['auto'] * 1e3:.1f} ms, the best "
                        f"strategy ({best}) {med[best] * 1e3:.1f} ms: auto / best = "
                        f"{med['auto'] / med[best]:.2f} (target <= 1.10); its first call, "
                        f"timing the strategies, {first['auto'] * 1e3:.0f} ms")
        if GRAPH in med:
            graph = graphs[id(model)]
            verdicts.append(f"{label}: mc_graph recorded {graph.strategy} (replays timed: "
                            + ", ".join(f"{n} {t * 1e3:.3g} ms" for n, t in
                                        graph.seconds.items())
                            + f"), {med['loop'] / med[GRAPH]:.1f}x the loop; its capture took "
                            f"{captured * 1e3:.0f} ms")
        if label == "mlp-head, torch":
            verdicts.append(f"mlp-head, torch: auto is {med['loop'] / med['auto']:.1f}x the loop "
                            f"(target {HEAD_TARGET}x), the hand-written sampler "
                            f"{med['loop'] / med[HAND]:.1f}x"
                            + (f", mc_graph {med['loop'] / med[GRAPH]:.1f}x" if GRAPH in med
                               else ""))
    for line in verdicts:
        print(line)
    if args.profile:
        print()
        host_costs(device)


if __name__ == "__main__":
    main()
