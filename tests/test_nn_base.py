"""The bases every dropkit module shares: a validated rate, the backend switch, FX leaves."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn

import dropkit.nn as dn
from conftest import gen
from dropkit.nn._base import BACKENDS, DEFAULT_BACKEND, RateModule
from dropkit.tools.sites import dropout_sites


class Scale(RateModule):
    """A minimal dropkit-style module: the base alone gives it everything below."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return input * (1 - self.p)


class TestRate:
    def test_validated_on_every_assignment_and_kept_on_error(self) -> None:
        m = Scale(0.3)
        with pytest.raises(ValueError, match=r"^Scale: expected `p` to be a drop probability"):
            m.p = -1
        assert m.p == 0.3

    def test_kept_as_given_like_torch(self) -> None:
        assert Scale(1).p == 1 and isinstance(Scale(1).p, int) and repr(Scale(1)) == "Scale(p=1)"

    def test_declared_a_dropout_site_by_its_class(self) -> None:
        (site,) = dropout_sites(nn.Sequential(Scale(0.2)))
        assert (site.kind, site.attr, site.rate) == ("module", "p", 0.2)

    def test_a_subclass_is_an_fx_leaf(self) -> None:
        traced = torch.fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), Scale(0.5)))
        assert [n.op for n in traced.graph.nodes].count("call_module") == 2


class TestBackend:
    def test_default_is_auto_seeded_only_where_measured_faster(self, monkeypatch) -> None:
        # the decision of the H100 run (BENCHMARKS.md): seeded on CUDA tensors of
        # AUTO_SEEDED_MIN_NUMEL elements or more, in the verified dtypes; torch elsewhere
        from dropkit.nn import _base

        assert DEFAULT_BACKEND == "auto" and dn.Dropout(0.5).backend == "auto"
        assert BACKENDS == ("auto", "torch", "seeded")
        m = dn.Dropout(0.5)

        class Cuda:  # what _seeded reads of an input, as a CUDA tensor reports it
            is_cuda = True

            def __init__(self, numel: int, dtype: torch.dtype) -> None:
                self._numel, self.dtype = numel, dtype

            def numel(self) -> int:
                return self._numel

        monkeypatch.setattr(_base, "HAS_TRITON", True)
        monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
        big = _base.AUTO_SEEDED_MIN_NUMEL
        assert m._seeded(Cuda(big, torch.bfloat16)) and m._seeded(Cuda(big, torch.float32))
        assert not m._seeded(Cuda(big - 1, torch.float32))
        assert not m._seeded(Cuda(big, torch.float64))
        assert not m._seeded(torch.ones(2))
        monkeypatch.setattr(_base, "HAS_TRITON", False)
        assert not m._seeded(Cuda(big, torch.float32))

    @pytest.mark.parametrize("backend, expected", [("torch", False), ("seeded", True),
                                                   ("auto", False)])  # auto: CPU -> torch
    def test_one_place_decides(self, backend: str, expected: bool) -> None:
        assert dn.Dropout(0.5, backend=backend)._seeded(torch.ones(2)) is expected

    def test_the_torch_path_is_the_function_with_the_generator(self) -> None:
        x = torch.ones(64)
        a = dn.Dropout(0.5, generator=gen(3))(x)
        b = dn.Dropout(0.5, generator=gen(3))(x)
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", ["auto", "seeded", "torch"])
def test_a_numpy_input_is_named_on_every_backend(backend: str) -> None:
    import numpy as np

    with pytest.raises(TypeError, match=r"^dropout: expected `input` to be a torch.Tensor, "
                                        r"got ndarray"):
        dn.Dropout(0.5, backend=backend)(np.ones(3))
