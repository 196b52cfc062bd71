"""Concrete dropout: a continuous relaxation of the Bernoulli mask, differentiable in p.

Paper: Gal, Hron & Kendall 2017, "Concrete Dropout" (eq. 5). Learned from the authors'
reference implementation (yaringal/ConcreteDropout).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dropkit._checks import (
    check_floating,
    check_generator,
    check_nonnegative,
    check_probability,
)
from dropkit._fx import leaf_function
from dropkit._torch_compat import assert_async
from dropkit.errors import UsageError, UsageTypeError
from dropkit.mask import batch_first, uniform_noise

__all__ = ["concrete_dropout"]

EPS = 1e-7  # keeps every log finite at p or u in {0, 1}


@leaf_function  # one node under torch.fx
def concrete_dropout(
    input: Tensor,
    p: Tensor | float,
    temperature: float = 0.1,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Multiply by a relaxed keep mask :math:`1 - z`, :math:`z = \sigma\big((\text{logit}\,p
    + \text{logit}\,u) / t\big)`, :math:`u \sim U(0, 1)`, and scale by ``1 / (1 - p)``.

    As the temperature ``t`` goes to 0, ``z`` becomes Bernoulli(p); at ``t > 0`` the output
    is differentiable in ``p``, so the rate can be learned by gradient descent.

    Args:
        input: a floating-point tensor.
        p: the drop probability, a float or a tensor (e.g. ``sigmoid`` of a parameter)
            with values in [0, 1).
        temperature: relaxation temperature, > 0. Default: 0.1 (the paper's).
        training: apply when True; in eval the input is returned unchanged.
        generator: as in :func:`dropkit.functional.dropout`.

    Module: :class:`dropkit.nn.ConcreteDropout`.
    """
    if isinstance(p, Tensor):
        if not p.is_floating_point():
            raise UsageTypeError(f"concrete_dropout: expected a floating-point tensor `p`, "
                            f"got dtype {p.dtype}")
        # checked on the device, without a host sync (a learned p is sigmoid(logit)); at
        # p = 1 the output would be 0 / 0
        assert_async(((p >= 0.0) & (p < 1.0)).all(),
                            "concrete_dropout: expected `p` in [0, 1)")
    else:
        p = check_probability("concrete_dropout", p, allow_one=False)
    check_floating("concrete_dropout", input, draws=training)
    t = check_nonnegative("concrete_dropout", temperature, "temperature")
    if t == 0.0:
        raise UsageError("concrete_dropout: expected `temperature` > 0, got temperature=0")
    check_generator("concrete_dropout", generator, input)
    if not training:
        return input
    p_t = torch.as_tensor(p, dtype=torch.float32, device=input.device)
    u = uniform_noise(input, generator=generator, batch_dim=batch_first(input))  # float32+
    p_t = p_t.to(u.dtype)
    logit = (
        torch.log(p_t + EPS) - torch.log1p(EPS - p_t) + torch.log(u + EPS) - torch.log1p(EPS - u)
    )
    keep = 1.0 - torch.sigmoid(logit / t)
    return (input * keep / (1.0 - p_t)).to(input.dtype)
