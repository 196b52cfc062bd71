"""DropConnect modules: a Linear that drops weights, and a wrapper for any module.

See :mod:`dropkit.functional.drop_connect`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from dropkit._checks import check_probability
from dropkit.errors import UsageError, UsageTypeError
from dropkit.functional.drop_connect import drop_connect
from dropkit.mask import noise_shape
from dropkit.nn._base import DEFAULT_BACKEND, RateMixin, RateModule, SeededBackendMixin

__all__ = ["DropConnect", "DropConnectLinear"]


class _WeightDrop(SeededBackendMixin):
    """How both modules drop one weight: a torch mask, or a seeded one (no mask memory)."""

    p: float
    rowwise: bool

    def _drop(self, weight: Tensor) -> Tensor:
        if not self._seeded(weight):
            return drop_connect(weight, self.p, True, rowwise=self.rowwise,
                                generator=self.generator)
        from dropkit import seeded

        seed = self._new_seed(weight)
        if not self.rowwise:
            return seeded.dropout(weight, self.p, True, seed=seed)
        rows = weight.new_ones(noise_shape(weight.shape, range(1, weight.dim())))  # (out, 1, ...)
        return weight * seeded.dropout(rows, self.p, True, seed=seed)


class DropConnectLinear(_WeightDrop, RateMixin, nn.Linear):
    """An :class:`torch.nn.Linear` whose weight is dropped in training (Wan et al. 2013).

    A drop-in for ``nn.Linear``: same parameters, same ``state_dict`` keys, and in eval
    it computes exactly ``nn.Linear``. The bias is not dropped.

    Args:
        in_features, out_features, bias, device, dtype: as ``nn.Linear``.
        p: probability of dropping a connection. Default: 0.5.
        rowwise: drop whole rows (output units). Default: False.
        generator: keyword-only source of randomness.
        backend, seed_per_rank: as :class:`dropkit.nn.Dropout`: ``"seeded"`` drops the
            weight with :func:`dropkit.seeded.dropout`. Default: ``"torch"``, True.
    """

    shares_noise_across_batch = True  # one weight mask per forward

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        p: float = 0.5,
        *,
        rowwise: bool = False,
        generator: torch.Generator | None = None,
        backend: str = DEFAULT_BACKEND,
        seed_per_rank: bool = True,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        p = check_probability("DropConnectLinear", p)
        self._set_backend(backend, seed_per_rank)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.p = p
        self.rowwise = rowwise
        self.generator = generator

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, p={self.p}, rowwise={self.rowwise}"
                f"{self._backend_repr()}")

    def forward(self, input: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return F.linear(input, self.weight, self.bias)
        return F.linear(input, self._drop(self.weight), self.bias)


class DropConnect(_WeightDrop, RateModule):
    """Wrap any module so that training drops entries of its weights.

    The wrapped module keeps its parameters (pretrained weights load as before, under
    ``module.``) and its own forward: Linear, Conv with stride, groups and bias, or an
    ``nn.LSTM`` whose recurrent weights (``weight_hh_l0``, ...) get one mask per
    sequence, as AWD-LSTM's ``WeightDrop``. In eval it computes exactly what the wrapped
    module computes. Each forward in training draws one mask per named parameter and
    calls the module with those in place of the originals (``torch.func.functional_call``),
    so the module and its parameters are never modified.

    Args:
        module: the module to wrap.
        p: probability of dropping a weight entry. Default: 0.5.
        params: names of the parameters to drop (dotted for submodules). Default: ``("weight",)``.
        rowwise: drop whole rows of each weight. Default: False.
        generator: keyword-only source of randomness.
        backend, seed_per_rank: as :class:`dropkit.nn.DropConnectLinear`.
    """

    shares_noise_across_batch = True  # one weight mask per forward

    def __init__(
        self,
        module: nn.Module,
        p: float = 0.5,
        params: Sequence[str] = ("weight",),
        rowwise: bool = False,
        *,
        generator: torch.Generator | None = None,
        backend: str = DEFAULT_BACKEND,
        seed_per_rank: bool = True,
    ) -> None:
        self._set_backend(backend, seed_per_rank)
        if not isinstance(module, nn.Module):
            raise UsageTypeError(f"DropConnect: expected an nn.Module, got {type(module).__name__}")
        if isinstance(params, str) or not params:
            raise UsageError(
                "DropConnect: expected `params` to be a non-empty sequence of names, "
                f"got {params!r}"
            )
        names = dict(module.named_parameters())
        for name in params:
            if name not in names:
                raise UsageError(
                    f"DropConnect: {type(module).__name__} has no parameter {name!r}; "
                    f"expected one of {sorted(names)}"
                )
            if not names[name].is_floating_point():
                raise UsageTypeError(f"DropConnect: parameter {name!r} is not floating point")
        super().__init__(p, generator=generator)
        self.module = module
        self.params = tuple(params)
        self.rowwise = rowwise

    def extra_repr(self) -> str:
        return f"p={self.p}, params={self.params}, rowwise={self.rowwise}{self._backend_repr()}"

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.training or self.p == 0.0:
            return self.module(*args, **kwargs)
        weights = {name: self._drop(self.module.get_parameter(name)) for name in self.params}
        return functional_call(self.module, weights, args, kwargs)
