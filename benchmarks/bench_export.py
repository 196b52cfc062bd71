"""Serving Monte Carlo dropout: the exported program in onnxruntime against eager mc_predict.

Run::

    .venv/bin/python benchmarks/bench_export.py            # full, on the CPU
    .venv/bin/python benchmarks/bench_export.py --quick    # a smoke run

T = 30 samples per call, through:

* ``mlp``: the 784-1024-1024-10 MLP of Srivastava et al. 2014 (dropout 0.2 on the
  input, 0.5 after each hidden layer; ``dropkit train``'s model), a batch of 64;
* ``bert-tiny``: a BERT at the size of the tests' (hidden 16, 2 layers, attention and
  hidden dropout 0.3), 4 sequences of 7 tokens: host work alone.

Variants, interleaved, medians: eager ``dropkit.mc_predict`` (``auto``, after its
first call), the ``torch.export`` program run eagerly (``program.module()``), and the
ONNX file in onnxruntime with seeded masks (``seed_input=True``, Philox) and with the
runtime's generator (``seed_input=False``). The ratios are mc_predict / variant.

The draw table decides where the seeded masks come from: 2**20 uniforms in onnxruntime
from dropkit's ONNX form of the op (uint64 nodes), from torch's own export of the same
Philox in int64 torch ops, and from ONNX's ``RandomUniformLike`` (not a function of any
input).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from bench_mc_predict import tiny_bert_model
from bench_mlp_step import machine
from torch import nn

import dropkit
from dropkit.app.models import build_model
from dropkit.inference.export import quiet_export
from dropkit.inference.to_onnx import input_names
from dropkit.seeded import philox
from dropkit.seeded.onnx import TRANSLATIONS
from dropkit.seeded.stream import philox_uniform

SAMPLES = 30


def _medians(variants: dict[str, Callable[[], object]], rounds: int, reps: int
             ) -> dict[str, float]:
    """Median seconds per call of each variant, the variants interleaved round by round."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up: mc_predict's auto choice, onnxruntime's first run
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            times[name].append((time.perf_counter() - start) / reps)
    return {name: statistics.median(t) for name, t in times.items()}


def _session(program: torch.export.ExportedProgram, folder: Path, name: str
             ) -> ort.InferenceSession:
    path = folder / f"{name}.onnx"
    dropkit.export_onnx(program, path)
    return ort.InferenceSession(str(path))


def _feed(program: torch.export.ExportedProgram, x: object, seeded: bool) -> dict:
    tensors = list(x.values()) if isinstance(x, dict) else [x]
    feed = {n: t.numpy() for n, t in zip(input_names(program), tensors, strict=False)}
    if seeded:
        feed.update(seed=np.array(7), offset=np.array(0))
    return feed


def serving(name: str, model: nn.Module, x: object, folder: Path, rounds: int, reps: int
            ) -> list[str]:
    seeded = dropkit.export_mc(model, x, SAMPLES)
    runtime = dropkit.export_mc(model, x, SAMPLES, seed_input=False)
    s_seeded = _session(seeded, folder, f"{name}-seeded")
    s_runtime = _session(runtime, folder, f"{name}-runtime")
    f_seeded, f_runtime = _feed(seeded, x, True), _feed(runtime, x, False)
    module = seeded.module()
    seed = (torch.tensor(7), torch.tensor(0))

    def exported() -> object:
        with torch.no_grad():
            return module(x, *seed)

    times = _medians({
        "mc_predict (eager, auto)": lambda: dropkit.mc_predict(model, x, SAMPLES),
        "torch.export program, eager": exported,
        "onnxruntime, seeded (Philox)": lambda: s_seeded.run(None, f_seeded),
        "onnxruntime, runtime generator": lambda: s_runtime.run(None, f_runtime),
    }, rounds, reps)
    base = times["mc_predict (eager, auto)"]
    return [f"| {name} | {variant} | {t * 1e3:.2f} | {base / t:.2f}x |"
            for variant, t in times.items()]


class _OpDraw(nn.Module):
    def forward(self, like: torch.Tensor, seed: torch.Tensor, counter: torch.Tensor
                ) -> torch.Tensor:
        return philox_uniform(like, seed, counter)


class _TorchPhilox(nn.Module):
    """The same Philox in torch's int64 ops, as torch.onnx exports them itself."""

    def forward(self, counters: torch.Tensor) -> torch.Tensor:
        words = torch.stack(philox.philox4x32(counters, 12345), dim=1)
        return philox.uniform_from_uint32(words).view(-1)


class _RuntimeDraw(nn.Module):
    def forward(self, like: torch.Tensor) -> torch.Tensor:
        return torch.rand_like(like)


def draws(folder: Path, rounds: int, reps: int) -> list[str]:
    n = 1 << 20
    like, seed, counter = torch.empty(n), torch.tensor(12345), torch.tensor(0)
    counters = torch.arange(n // 4)
    sessions = {}
    with quiet_export():
        for label, module, args, table in (
                ("dropkit's ONNX form (uint64 nodes)", _OpDraw(), (like, seed, counter),
                 TRANSLATIONS),
                ("torch's own export (int64 torch ops)", _TorchPhilox(), (counters,), None),
                ("ONNX RandomUniformLike (no seed input)", _RuntimeDraw(), (like,), None)):
            path = folder / f"draw-{len(sessions)}.onnx"
            torch.onnx.export(module, args, str(path), dynamo=True, verbose=False,
                              custom_translation_table=table)
            session = ort.InferenceSession(str(path))
            feed = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args, strict=True)}
            sessions[label] = (session, feed)
    times = _medians({label: (lambda s=s, f=f: s.run(None, f))
                      for label, (s, f) in sessions.items()}, rounds, reps)
    base = times["ONNX RandomUniformLike (no seed input)"]
    return [f"| {label} | {t * 1e3:.2f} | {t / base:.1f}x |" for label, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    args = parser.parse_args()
    rounds, reps = (3, 2) if args.quick else (15, 5)
    warnings.filterwarnings("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    print(machine() + f", onnxruntime {ort.__version__}")
    torch.manual_seed(0)
    mlp = build_model("mlp", n_features=784, n_outputs=10).eval()
    bert = tiny_bert_model()
    cases: list[tuple[str, nn.Module, object]] = [("mlp", mlp, torch.rand(64, 784))]
    if bert is not None:
        cases.append(("bert-tiny", *bert))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"\nT = {SAMPLES} samples per call; milliseconds per call (median)\n")
        print("| model | variant | ms | mc_predict / variant |")
        print("|---|---|---:|---:|")
        for case in cases:
            print("\n".join(serving(*case, folder, rounds, reps)))
        print("\n2**20 uniforms in onnxruntime; milliseconds per call (median)\n")
        print("| source | ms | / RandomUniformLike |")
        print("|---|---:|---:|")
        print("\n".join(draws(folder, rounds, reps)))


if __name__ == "__main__":
    main()
