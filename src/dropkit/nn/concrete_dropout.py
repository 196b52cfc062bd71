"""Concrete dropout with a learned rate; see :mod:`dropkit.functional.concrete_dropout`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dropkit._checks import check_nonnegative, check_probability
from dropkit.errors import UsageError
from dropkit.functional.concrete_dropout import concrete_dropout
from dropkit.nn._base import RateMixin

__all__ = ["ConcreteDropout", "concrete_regularization"]


class ConcreteDropout(RateMixin, nn.Module):
    """Dropout before ``layer`` whose rate is learned (Gal, Hron & Kendall 2017).

    The rate is ``sigmoid(p_logit)``, a parameter trained with the rest of the model;
    add :func:`concrete_regularization` of the model to the loss. For N training
    examples and a prior length scale l, the paper uses ``weight_regularizer = l**2 / N``
    and ``dropout_regularizer = 2 / N`` (times the model precision for regression).
    In eval it applies no noise: ``layer(x)``.

    Args:
        layer: the layer the dropped input feeds; ``None`` for dropout alone.
        p: initial drop probability, in (0, 1). Default: 0.1.
        temperature: relaxation temperature. Default: 0.1.
        weight_regularizer: coefficient of ``sum(w**2) / (1 - p)`` over ``layer``'s
            parameters. Default: 1e-6.
        dropout_regularizer: coefficient of the negative entropy of Bernoulli(p), times
            the input's features per example. Default: 1e-5.
        generator: keyword-only source of randomness.

    ``p`` reads the current rate; assigning it (e.g. by ``dropkit.set_rate``) resets the
    learned value.
    """

    def __init__(
        self,
        layer: nn.Module | None = None,
        p: float = 0.1,
        temperature: float = 0.1,
        weight_regularizer: float = 1e-6,
        dropout_regularizer: float = 1e-5,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.layer = layer if layer is not None else nn.Identity()
        self.p_logit = nn.Parameter(torch.zeros(()))
        self.p = p
        self.temperature = check_nonnegative("ConcreteDropout", temperature, "temperature")
        self.weight_regularizer = check_nonnegative(
            "ConcreteDropout", weight_regularizer, "weight_regularizer"
        )
        self.dropout_regularizer = check_nonnegative(
            "ConcreteDropout", dropout_regularizer, "dropout_regularizer"
        )
        self.generator = generator
        self.input_features: int | None = None

    @property  # type: ignore[override]
    def p(self) -> float:
        return float(torch.sigmoid(self.p_logit.detach()))

    @p.setter
    def p(self, value: float) -> None:
        value = check_probability("ConcreteDropout", value)
        if value in (0.0, 1.0):
            raise UsageError(
                f"ConcreteDropout: expected `p` in the open interval (0, 1) (a learned "
                f"rate has a finite logit), got p={value!r}"
            )
        with torch.no_grad():
            self.p_logit.fill_(math.log(value) - math.log1p(-value))

    def extra_repr(self) -> str:
        return f"p={self.p:.4g}, temperature={self.temperature}"

    def forward(self, input: Tensor) -> Tensor:
        self.input_features = input[0].numel() if input.dim() > 0 else 1
        dropped = concrete_dropout(
            input, torch.sigmoid(self.p_logit), self.temperature, self.training,
            generator=self.generator,
        )
        return self.layer(dropped)

    def regularization(self) -> Tensor:
        """The KL term of this layer (Gal et al. 2017, eq. 3), differentiable in p."""
        if self.input_features is None:
            raise RuntimeError("ConcreteDropout.regularization: call forward once first")
        p = torch.sigmoid(self.p_logit)
        squares = sum((w.pow(2).sum() for w in self.layer.parameters()), torch.zeros(()))
        weights = self.weight_regularizer * squares / (1 - p)
        neg_entropy = p * torch.log(p) + (1 - p) * torch.log1p(-p)
        return weights + self.dropout_regularizer * self.input_features * neg_entropy


def concrete_regularization(model: nn.Module) -> Tensor:
    """The sum of :meth:`dropkit.nn.ConcreteDropout.regularization` over ``model``: add it
    to the loss."""
    terms = [m.regularization() for m in model.modules() if isinstance(m, ConcreteDropout)]
    return torch.stack(terms).sum() if terms else torch.zeros(())
