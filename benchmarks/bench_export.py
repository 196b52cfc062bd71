"""Serving Monte Carlo dropout: the exported program in onnxruntime against eager mc_predict.

Run::

    .venv/bin/python benchmarks/bench_export.py            # full, on the CPU
    .venv/bin/python benchmarks/bench_export.py --quick    # a smoke run
    python benchmarks/bench_export.py --device cuda --compile   # the GPU run (issue 30)

T = 30 samples per call, through:

* ``mlp``: the 784-1024-1024-10 MLP of Srivastava et al. 2014 (dropout 0.2 on the
  input, 0.5 after each hidden layer; ``dropkit train``'s model), a batch of 64;
* ``bert-tiny``: a BERT at the size of the tests' (hidden 16, 2 layers, attention and
  hidden dropout 0.3), 4 sequences of 7 tokens: host work alone.

Variants, interleaved, medians: eager ``dropkit.mc_predict`` (``auto``, after its
first call), the ``torch.export`` program run eagerly (``program.module()``), and the
ONNX file in onnxruntime with seeded masks (``seed_input=True``, Philox) and with the
runtime's generator (``seed_input=False``). The ratios are mc_predict / variant.
onnxruntime's threads do not spin between runs here: spinning, they slow the torch
variants run between them several times over.
``--compile`` adds the program under ``torch.compile``; ``--device cuda`` runs the models
on the GPU, and onnxruntime there only where its CUDA provider is installed
(``onnxruntime-gpu``), the rows skipped otherwise.

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


def _session(program: torch.export.ExportedProgram, folder: Path, name: str, device: str
             ) -> ort.InferenceSession | None:
    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        return None
    path = folder / f"{name}.onnx"
    dropkit.export_onnx(program, path)
    return ort.InferenceSession(str(path), _quiet_threads(), providers=[provider])


def _quiet_threads() -> ort.SessionOptions:
    """onnxruntime's threads not spinning after a run: spinning, they take the cores from
    the interleaved torch variants (mc_predict measured 6x slower beside them)."""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _feed(program: torch.export.ExportedProgram, x: object, seeded: bool) -> dict:
    tensors = list(x.values()) if isinstance(x, dict) else [x]
    feed = {n: t.cpu().numpy() for n, t in zip(input_names(program), tensors, strict=False)}
    if seeded:
        feed.update(seed=np.array(7), offset=np.array(0))
    return feed


def _synced(fn: Callable[[], object], device: str) -> Callable[[], object]:
    if device != "cuda":
        return fn

    def run() -> object:
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def serving(name: str, model: nn.Module, x: object, folder: Path, rounds: int, reps: int,
            device: str = "cpu", compile: bool = False) -> list[str]:
    seeded = dropkit.export_mc(model, x, SAMPLES)
    runtime = dropkit.export_mc(model, x, SAMPLES, seed_input=False)
    module = seeded.module()
    seed = (torch.tensor(7), torch.tensor(0))

    def program(run: Callable[..., object]) -> Callable[[], object]:
        def call() -> object:
            with torch.no_grad():
                return run(x, *seed)

        return call

    variants: dict[str, Callable[[], object]] = {
        "mc_predict (eager, auto)": lambda: dropkit.mc_predict(model, x, SAMPLES),
        "torch.export program, eager": program(module),
    }
    if compile:
        variants["torch.export program, torch.compile"] = program(torch.compile(module))
    for label, exported, seeded_input in (("seeded (Philox)", seeded, True),
                                          ("runtime generator", runtime, False)):
        session = _session(exported, folder, f"{name}-{seeded_input}", device)
        if session is not None:
            feed = _feed(exported, x, seeded_input)
            variants[f"onnxruntime, {label}"] = lambda s=session, f=feed: s.run(None, f)
    times = _medians({k: _synced(fn, device) for k, fn in variants.items()}, rounds, reps)
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
            session = ort.InferenceSession(str(path), _quiet_threads())
            feed = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args, strict=True)}
            sessions[label] = (session, feed)
    times = _medians({label: (lambda s=s, f=f: s.run(None, f))
                      for label, (s, f) in sessions.items()}, rounds, reps)
    base = times["ONNX RandomUniformLike (no seed input)"]
    return [f"| {label} | {t * 1e3:.2f} | {t / base:.1f}x |" for label, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--compile", action="store_true", help="add torch.compile's row")
    args = parser.parse_args()
    rounds, reps = (3, 2) if args.quick else (15, 5)
    warnings.filterwarnings("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    print(machine() + f", onnxruntime {ort.__version__}")
    torch.manual_seed(0)
    device = torch.device(args.device)
    mlp = build_model("mlp", n_features=784, n_outputs=10).eval().to(device)
    bert = tiny_bert_model()
    cases: list[tuple[str, nn.Module, object]] = [
        ("mlp", mlp, torch.rand(64, 784, device=device))]
    if bert is not None:
        model, batch = bert
        cases.append(("bert-tiny", model.to(device),
                      {k: v.to(device) for k, v in batch.items()}))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"\nT = {SAMPLES} samples per call; milliseconds per call (median)\n")
        print("| model | variant | ms | mc_predict / variant |")
        print("|---|---|---:|---:|")
        for case in cases:
            print("\n".join(serving(*case, folder, rounds, reps, args.device, args.compile)))
        print("\n2**20 uniforms in onnxruntime; milliseconds per call (median)\n")
        print("| source | ms | / RandomUniformLike |")
        print("|---|---:|---:|")
        print("\n".join(draws(folder, rounds, reps)))


if __name__ == "__main__":
    main()
