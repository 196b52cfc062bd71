"""export_onnx: the ONNX file of an exported Monte Carlo program."""

import numpy as np
import pytest
import torch
from torch import nn

import dropkit
from dropkit.app.models import build_model
from dropkit.inference.to_onnx import adaptive_max_pool2d

ort = pytest.importorskip("onnxruntime")


@torch.library.custom_op("dropkit_test::twice", mutates_args=())
def _twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_twice.register_fake
def _(x):
    return torch.empty_like(x)


class _Foreign(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return _twice(self.drop(x))


def test_onnx_conversion_failure_is_one_line_and_writes_nothing(tmp_path):
    x = torch.randn(4, 6)
    program = dropkit.export_mc(_Foreign().eval(), x, samples=2)
    with pytest.raises(RuntimeError, match="export_onnx: torch.onnx cannot convert this "
                       "program: .*dropkit_test.twice"):
        dropkit.export_onnx(program, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("height, width", [(5, 5), (7, 9), (13, 14), (14, 14), (28, 27)])
@pytest.mark.parametrize("out", [(1, 1), (3, 4), (4, 4), (5, 2)])
def test_adaptive_max_pool2d_decomposition_is_exact(height, width, out):
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(height))
    assert torch.equal(adaptive_max_pool2d(x, list(out))[0],
                       nn.functional.adaptive_max_pool2d(x, out))


@pytest.mark.slow
def test_dropkits_cnn_serves_with_spatial_dropout(tmp_path):
    # its AdaptiveMaxPool2d has no ONNX form of torch.onnx's: decomposed, it serves
    torch.manual_seed(0)
    model = build_model("cnn", n_features=784, n_outputs=10, image_shape=(1, 28, 28)).eval()
    x = torch.rand(3, 784)
    program = dropkit.export_mc(model, x, samples=4)
    dropkit.export_onnx(program, tmp_path / "cnn.onnx")
    session = ort.InferenceSession(str(tmp_path / "cnn.onnx"))
    served = session.run(None, {"input": x.numpy(), "seed": np.array(2),
                                "offset": np.array(0)})[0]
    with torch.no_grad():
        eager = program.module()(x, torch.tensor(2), torch.tensor(0)).numpy()
    assert served.shape == (4, 3, 10) and np.allclose(served, eager, atol=1e-5)
    assert not np.allclose(served[0], served[1])


class _PoolIndices(nn.Module):
    """Reads the pooling's indices: no decomposition gives them, so the op is named."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        values, indices = nn.functional.adaptive_max_pool2d(self.drop(x), 2, True)
        return values + indices.to(values.dtype)


def test_pooling_indices_are_refused_by_name(tmp_path):
    program = dropkit.export_mc(_PoolIndices().eval(), torch.randn(2, 3, 5, 5), samples=2)
    with pytest.raises(RuntimeError, match="adaptive_max_pool2d"):
        dropkit.export_onnx(program, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
