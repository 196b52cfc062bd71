"""An exported Monte Carlo program (:func:`dropkit.export_mc`) as an ONNX file.

torch.onnx converts the program; dropkit adds what it lacks: the ONNX form of the seeded
draws (:mod:`dropkit.seeded.onnx`), a decomposition of ``adaptive_max_pool2d`` where its
sizes are static and its indices unused (ONNX has no adaptive pooling; dropkit's CNN
uses it), input names a server can read, one line instead of torch.onnx's long report,
and an atomic write.
"""

from __future__ import annotations

import operator
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor
from torch.export import ExportedProgram

from dropkit.errors import UsageTypeError
from dropkit.inference.export import quiet_export
from dropkit.inference.sampling.failures import reason

__all__ = ["export_onnx", "input_names", "adaptive_max_pool2d"]

_POOL = torch.ops.aten.adaptive_max_pool2d.default


def adaptive_max_pool2d(x: Tensor, output_size: list[int]) -> tuple[Tensor, Tensor]:
    """``adaptive_max_pool2d`` for static sizes as slices and maxima, rows then columns (a
    window is a product of a row range and a column range, so the maximum is exact); the
    indices are zeros, used only where the graph never reads them."""

    def pool(t: Tensor, dim: int, out: int) -> Tensor:
        size = t.shape[dim]
        starts = [(i * size) // out for i in range(out + 1)]
        ends = [-(-(i + 1) * size // out) for i in range(out)]  # ceil((i + 1) size / out)
        return torch.cat([t.narrow(dim, starts[i], ends[i] - starts[i]).amax(dim, keepdim=True)
                          for i in range(out)], dim)

    values = pool(pool(x, -2, output_size[0]), -1, output_size[1])
    return values, torch.zeros(values.shape, dtype=torch.int64, device=x.device)


def _decomposable(node: torch.fx.Node) -> bool:
    """An adaptive max pooling whose sizes are static and whose indices no node reads."""
    value = node.args[0].meta.get("val") if isinstance(node.args[0], torch.fx.Node) else None
    static = value is not None and all(isinstance(d, int) for d in value.shape[-2:])
    return static and all(user.target is not operator.getitem or user.args[1] == 0
                          or not user.users for user in node.users)  # an unread getitem


def _onnx_ready(program: ExportedProgram) -> ExportedProgram:
    """``program`` with the decompositions torch.onnx lacks applied, where they apply."""
    pools = [n for n in program.graph.nodes if n.target is _POOL]
    if not pools or not all(_decomposable(n) for n in pools):
        return program  # none, or one that reads its indices: torch.onnx names the op
    # this op alone: torch.onnx decomposes the rest its own way (the full default table
    # would turn empty_like into empty_permuted, which has no ONNX form)
    return program.run_decompositions({_POOL: adaptive_max_pool2d})


def input_names(program: ExportedProgram) -> list[str]:
    """The ONNX input names :func:`dropkit.export_onnx` gives ``program``'s inputs: ``input``
    for a tensor, ``input_0``, ``input_1``, ... for a tuple, a mapping's keys, then
    ``seed`` and ``offset`` where the program takes them."""
    args, _ = program.example_inputs
    x, rest = args[0], args[1:]
    if isinstance(x, Mapping):
        names = [str(k) for k, v in x.items() if isinstance(v, Tensor)]
    elif isinstance(x, tuple):
        names = [f"input_{i}" for i, v in enumerate(x) if isinstance(v, Tensor)]
    else:
        names = ["input"]
    return names + ["seed", "offset"][:len(rest)]


def _conversion_reason(error: Exception) -> str:
    """The first cause torch.onnx's long report names (an op with no ONNX form)."""
    for line in str(error).splitlines():
        if line.startswith("<class") and ">: " in line:
            return line.split(">: ", 1)[1].strip()
    return reason(error)


def export_onnx(program: ExportedProgram, path: str | os.PathLike[str]) -> None:
    """Write ``program`` (from :func:`dropkit.export_mc`) as an ONNX file, atomically; the
    seeded draws in their unsigned 64-bit ONNX form (:mod:`dropkit.seeded.onnx`). Needs
    the ``onnx`` and ``onnxscript`` packages (``pip install dropkit[onnx]``). Inputs are
    named by :func:`dropkit.inference.to_onnx.input_names`, the output ``samples``."""
    if not isinstance(program, ExportedProgram):
        raise UsageTypeError(f"export_onnx: expected a torch.export.ExportedProgram (from "
                             f"dropkit.export_mc), got {type(program).__name__}")
    from dropkit.seeded.onnx import TRANSLATIONS

    target = Path(path)
    args, kwargs = program.example_inputs
    names = input_names(program)
    try:
        with quiet_export():
            onnx_program = torch.onnx.export(
                _onnx_ready(program), args, kwargs=kwargs, dynamo=True, verbose=False,
                custom_translation_table=TRANSLATIONS, input_names=names,
                output_names=["samples"])
    except Exception as error:
        raise RuntimeError(f"export_onnx: torch.onnx cannot convert this program: "
                           f"{_conversion_reason(error)}") from error
    assert onnx_program is not None
    # saved whole into a fresh folder beside the target, then moved: a model past 2 GB
    # keeps its weights in `<name>.data` beside it, which must move along
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as part:
        onnx_program.save(os.path.join(part, target.name))
        for name in sorted(os.listdir(part), key=lambda n: n == target.name):  # model last
            os.replace(os.path.join(part, name), target.parent / name)
