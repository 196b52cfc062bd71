"""Which tensor of a model's output is sampled (``output=``), and one forward pass."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from dropkit._trace import call_model
from dropkit.inference.sampling.failures import reason

__all__ = ["Output", "OutputError", "select", "forward"]


def _describe(out: Any) -> str:
    def one(v: Any) -> str:
        return f"Tensor{tuple(v.shape)}" if isinstance(v, Tensor) else type(v).__name__

    if isinstance(out, Mapping):
        return f"a {type(out).__name__} with keys {[str(k) for k in out]}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {[one(v) for v in out]}"
    return f"a {type(out).__name__}"


Output = str | Callable[[Any], Tensor] | None


class OutputError(ValueError):
    """``output`` does not pick a tensor: the caller's mistake, never a reason to try
    the next strategy."""


def select(out: Any, output: Output) -> Tensor:
    """The tensor ``output`` names in a model's output (see :func:`mc_predict`)."""
    if output is None:
        if isinstance(out, Tensor):
            return out
        if isinstance(out, Mapping) and isinstance(out.get("logits"), Tensor):
            return out["logits"]
        raise OutputError(
            f"mc_predict: the model returned {_describe(out)}, not a tensor nor an output "
            "with `logits`; pass output= a key or attribute name, or a callable that picks "
            "the tensor to sample"
        )
    picked: Any
    if callable(output):
        try:
            picked = output(out)
        except Exception as error:  # the caller's callable, not the strategy, failed
            raise OutputError(f"mc_predict: the output= callable raised on "
                               f"{_describe(out)}: {reason(error)}") from error
    elif isinstance(out, Mapping) and output in out:
        picked = out[output]
    else:
        picked = getattr(out, output, None)
    if not isinstance(picked, Tensor):
        raise OutputError(
            f"mc_predict: output={output!r} picks {type(picked).__name__} from "
            f"{_describe(out)}; expected it to pick a tensor"
        )
    return picked


def forward(model: nn.Module, x: Any, output: Output) -> Tensor:
    return select(call_model(model, x), output)  # x was checked by mc_predict
