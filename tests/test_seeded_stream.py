"""The draws of an exported program: the op, the stream, and the op's ONNX form."""

import numpy as np
import pytest
import torch

from dropkit import seeded
from dropkit.seeded.philox import as_int64
from dropkit.seeded.stream import CounterStream, normal_from_uniform, philox_uniform

SEEDS = [0, 1, 2**32 + 5, 2**63 + 17, 2**64 - 1]  # the high half of the key and its sign bit


def _i64(v: int) -> torch.Tensor:
    return torch.tensor(as_int64(v) if v >= 0 else v, dtype=torch.int64)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 3, 7)])
def test_op_is_the_seeded_stream(seed, shape):
    counter = 2**32 - 2  # the counter carries into its second word inside the draw
    u = philox_uniform(torch.empty(shape), _i64(seed), torch.tensor(counter))
    want = seeded.uniform(int(np.prod(shape)), seed=seed, offset=4 * counter)
    assert u.dtype == torch.float32 and torch.equal(u.flatten(), want)


def test_draws_take_disjoint_counters_in_order():
    stream = CounterStream(_i64(9), torch.tensor(3))
    a, b = stream.uniform(torch.empty(5)), stream.uniform(torch.empty(2, 3))
    # the first draw takes counters 3 and 4 (5 uniforms round up to 8): the second starts at 5
    assert torch.equal(a, seeded.uniform(5, seed=9, offset=12))
    assert torch.equal(b.flatten(), seeded.uniform(6, seed=9, offset=20))
    assert int(stream.next) == 3 + 2 + 2


def test_normal_from_uniform_is_standard_normal():
    n = 1 << 16
    u = seeded.uniform(2 * n, seed=4)
    z = normal_from_uniform(u[:n], u[n:]).double()
    assert torch.isfinite(z).all()
    # mean within 5 standard errors of 0; the variance's standard error is sqrt(2 / n)
    assert abs(z.mean().item()) < 5 / n**0.5
    assert abs(z.var().item() - 1.0) < 5 * (2 / n) ** 0.5


class _Draw(torch.nn.Module):
    def forward(self, like, seed, counter):
        return philox_uniform(like, seed, counter)


@pytest.mark.parametrize("seed", [0, 2**63 + 17, 2**64 - 1])
def test_onnx_form_gives_the_same_bits(tmp_path, seed):
    ort = pytest.importorskip("onnxruntime")
    from dropkit.seeded.onnx import TRANSLATIONS

    args = (torch.empty(3, 11), _i64(seed), torch.tensor(2**32 - 2))
    path = str(tmp_path / "draw.onnx")
    torch.onnx.export(_Draw(), args, path, dynamo=True, verbose=False,
                      custom_translation_table=TRANSLATIONS,
                      input_names=["like", "seed", "counter"])
    session = ort.InferenceSession(path)
    got = session.run(None, {"like": args[0].numpy(), "seed": args[1].numpy(),
                             "counter": args[2].numpy()})[0]
    assert np.array_equal(got, _Draw()(*args).numpy())
