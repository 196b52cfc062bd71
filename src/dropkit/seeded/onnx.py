"""``dropkit::philox_uniform`` in ONNX: Philox4x32-10 from unsigned 64-bit ONNX ops.

torch's own export of the int64 arithmetic in ``dropkit.seeded.philox`` is exact
but slow: each ``>>`` on a signed tensor becomes seven ONNX nodes, and its integer
division goes through float32 and is wrong past 2**24. In ``uint64`` a 32x32-bit
product, a shift and a mask are one node each and wrap as C++ unsigned arithmetic
defines them, so this form runs in about a fifth of the time in onnxruntime
(BENCHMARKS.md) and gives the same bits (tested). Imports onnxscript: only
:func:`dropkit.export_onnx` loads this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir
from onnxscript import opset18

from dropkit.seeded import philox

__all__ = ["TRANSLATIONS", "philox_uniform"]

op: Any = opset18  # onnxscript's typed signatures do not follow traced values
_U64 = ir.DataType.UINT64


def _const(value: Any, dtype: Any) -> Any:
    return op.Constant(value=ir.tensor(np.array(value, dtype=dtype)))


def _u64(value: int) -> Any:
    return _const(value, np.uint64)


def _i64(value: int | list[int]) -> Any:
    return _const(value, np.int64)


def _mul_hi_lo(a: int, x: Any, mask32: Any, shift32: Any) -> tuple[Any, Any]:
    prod = op.Mul(x, _u64(a))  # < 2**64: exact in uint64
    return op.BitShift(prod, shift32, direction="RIGHT"), op.BitwiseAnd(prod, mask32)


def _words(counters: Any, seed: Any) -> list[Any]:
    """The four Philox words at each uint64 counter, keyed by the uint64 seed."""
    mask32, shift32 = _u64(philox.MASK32), _u64(32)
    k0, k1 = op.BitwiseAnd(seed, mask32), op.BitShift(seed, shift32, direction="RIGHT")
    c0 = op.BitwiseAnd(counters, mask32)
    c1 = op.BitwiseAnd(op.BitShift(counters, shift32, direction="RIGHT"), mask32)
    c2 = c3 = op.Sub(c0, c0)
    for _ in range(philox.ROUNDS):
        hi_b, lo_b = _mul_hi_lo(philox.ROUND_B, c2, mask32, shift32)
        hi_a, lo_a = _mul_hi_lo(philox.ROUND_A, c0, mask32, shift32)
        c0, c1, c2, c3 = (op.BitwiseXor(op.BitwiseXor(hi_b, c1), k0), lo_b,
                          op.BitwiseXor(op.BitwiseXor(hi_a, c3), k1), lo_a)
        k0 = op.BitwiseAnd(op.Add(k0, _u64(philox.KEY_A)), mask32)
        k1 = op.BitwiseAnd(op.Add(k1, _u64(philox.KEY_B)), mask32)
    return [c0, c1, c2, c3]


def _to_uniform(word: Any) -> Any:
    """:func:`dropkit.seeded.philox.uniform_from_uint32` on a uint64 word below 2**32."""
    sign = op.BitShift(word, _u64(31), direction="RIGHT")
    folded = op.BitwiseXor(word, op.Mul(sign, _u64(philox.MASK32)))
    return op.Mul(op.Cast(folded, to=ir.DataType.FLOAT), _const(4.6566127342e-10, np.float32))


def philox_uniform(like: Any, seed: Any, counter: Any) -> Any:
    """The op's ONNX form: float32 uniforms shaped like ``like``, from element
    ``4 * counter`` of the stream keyed by ``seed``."""
    shape = op.Shape(like)
    n = op.ReduceProd(shape, keepdims=0)
    blocks = op.Div(op.Add(n, _i64(3)), _i64(4))  # int64 Div truncates; n >= 0
    counters = op.Cast(op.Add(counter, op.Range(_i64(0), blocks, _i64(1))), to=_U64)
    words = _words(counters, op.Cast(seed, to=_U64))
    lanes = op.Concat(*[op.Unsqueeze(_to_uniform(w), _i64([1])) for w in words], axis=1)
    flat = op.Reshape(lanes, _i64([-1]))  # counter-major, lane-minor: the stream's order
    return op.Reshape(op.Slice(flat, _i64([0]), op.Unsqueeze(n, _i64([0]))), shape)


def _table() -> dict[Any, Any]:
    import torch

    import dropkit.seeded.stream  # noqa: F401 - registers the op

    return {torch.ops.dropkit.philox_uniform.default: philox_uniform}


TRANSLATIONS = _table()
