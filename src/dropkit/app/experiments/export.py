"""``dropkit export``: a trained run's network as a Monte Carlo program to serve.

The run folder of ``dropkit train`` holds ``config.json`` and ``checkpoint.pt``; the
network is rebuilt from the one and loaded from the other (its checksum checked), and
:func:`dropkit.export_mc` turns it into a program that returns T samples per call, with
a seed input, written as ONNX (:func:`dropkit.export_onnx`) or as a ``torch.export``
archive (``.pt2``, loaded with ``torch.export.load`` after ``import dropkit``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from dropkit._checks import check_int
from dropkit.app.experiments import engine
from dropkit.app.experiments.engine import CHECKPOINT, TrainConfig, load_final
from dropkit.app.experiments.io import CORRUPT, read_json
from dropkit.errors import UsageError
from dropkit.inference.export import export_mc, quiet_export
from dropkit.inference.to_onnx import export_onnx, input_names

__all__ = ["FORMATS", "run_export", "read_config"]

FORMATS = ("onnx", "pt2")


def read_config(folder: Path) -> TrainConfig:
    """The configuration a ``dropkit train`` run recorded in ``folder``, checked."""
    path = folder / "config.json"
    if not path.is_file() or not (folder / CHECKPOINT).is_file():
        raise UsageError(f"export: expected a run folder of `dropkit train` holding "
                         f"config.json and {CHECKPOINT}, got {str(folder)!r}")
    saved = read_json(path)
    unknown = sorted(set(saved) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise UsageError(f"{str(path)!r} records settings this dropkit does not know "
                         f"({', '.join(unknown)}); {CORRUPT}")
    config = TrainConfig(**saved)
    config.validate()
    return config


def _save_pt2(program: torch.export.ExportedProgram, path: Path) -> None:
    """``torch.export.save`` through a temporary file in the same folder, then a rename."""
    handle, part = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".pt2")
    os.close(handle)
    try:
        with quiet_export():
            torch.export.save(program, part)
        os.replace(part, path)
    finally:
        if os.path.exists(part):
            os.remove(part)


def run_export(run_dir: str | os.PathLike[str], *, samples: int = 30, format: str = "onnx",
               out: str | os.PathLike[str] | None = None, seed_input: bool = True,
               log: Callable[[str], None] = print) -> Path:
    """Export the network of the run in ``run_dir`` as a Monte Carlo program of
    ``samples`` samples per call to ``out`` (default ``<run_dir>/mc.<format>``)."""
    check_int("export", samples, "samples", 1)
    if format not in FORMATS:
        raise UsageError(f"export: expected `format` to be one of {FORMATS}, got {format!r}")
    folder = Path(run_dir)
    config = read_config(folder)
    target = Path(out) if out is not None else folder / f"mc.{format}"
    if not target.parent.is_dir() or target.is_dir():
        raise UsageError(f"export: expected `out` to name a file in an existing folder, got "
                         f"{str(target)!r}")
    data = engine.dataset_for(config)
    model = load_final(config, data, folder).eval()
    example = data.x_test[:2].float()
    program = export_mc(model, example, samples, seed_input=seed_input)
    if format == "pt2":
        _save_pt2(program, target)
    else:
        export_onnx(program, target)
    shape = "x".join(str(d) for d in example.shape[1:])
    log(f"wrote {target}: {samples} Monte Carlo samples per call of {config.model} "
        f"({config.dataset}); inputs {', '.join(input_names(program))} (input: N x {shape})"
        + (", seed and offset 0-dim int64" if seed_input else "")
        + f"; output samples ({samples}, N, {data.n_classes or 1})")
    return target
