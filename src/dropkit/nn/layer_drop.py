"""LayerDrop: skip whole blocks at training time, and prune them at inference.

Fan, Grave & Joulin 2019, "Reducing Transformer Depth on Demand with Structured Dropout".
Learned from fairseq's ``LayerDropModuleList`` (one coin per layer per batch, the
skipped layer's compute not run at all) and transformers' ``layerdrop``. Unlike
:class:`dropkit.nn.DropPath`, which multiplies a block's output by zero per example, a
skipped block here costs nothing; the price is that the coin serves the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from dropkit._checks import check_probability
from dropkit._recompute import generator_for
from dropkit.errors import UsageError, UsageTypeError
from dropkit.mask import shared_generator

__all__ = ["LayerDrop", "DEPTH_SCHEDULES"]

#: How the rates of the blocks follow from ``p``: the same for every block (the paper's),
#: or growing linearly with depth to ``p`` at the last block (stochastic depth's rule).
DEPTH_SCHEDULES = ("constant", "linear")  # the rate over depth (not over time)


class LayerDrop(nn.Module):
    """A sequence of blocks, each skipped in training with its own rate.

    ``forward(x, *args, **kwargs)`` runs ``x = block(x, *args, **kwargs)`` block after
    block. In training, block i is skipped (its input passes on unchanged) with
    probability ``rates[i]``: one coin per block per call, shared by the whole batch
    (fairseq's rule), drawn on the CPU from ``generator`` (or torch's global generator).
    In eval every block runs. The blocks must keep their input's shape (residual blocks);
    :func:`dropkit.diagnose` reports one that does not (``layerdrop-shape-change``).

    ``p`` is a rate attribute of the registry of dropout sites: ``set_rate``, schedules
    and ``find_dropout`` drive it, and the per-block rates scale with it.

    Args:
        layers: the blocks.
        p: the largest rate, in [0, 1).
        rates: explicit per-block rates instead (``p`` is then their maximum).
        schedule: ``"constant"`` (every block at ``p``, the paper's) or ``"linear"``
            (block i of L at ``p * (i + 1) / L``).
        generator: the source of the coins.
    """

    rate_attributes = ("p",)  # one attribute site, held at 0 by discovery passes
    shares_noise_across_batch = True
    skips_layers = True

    def __init__(self, layers: Iterable[nn.Module], p: float = 0.2, *,
                 rates: Sequence[float] | None = None, schedule: str = "constant",
                 generator: torch.Generator | None = None) -> None:
        blocks = list(layers)
        if not blocks or not all(isinstance(b, nn.Module) for b in blocks):
            raise UsageTypeError(f"LayerDrop: expected `layers` to be one or more nn.Modules, got "
                            f"{[type(b).__name__ for b in blocks]}")
        if schedule not in DEPTH_SCHEDULES:
            raise UsageError(f"LayerDrop: expected `schedule` to be one of {DEPTH_SCHEDULES}, got "
                             f"schedule={schedule!r}")
        if rates is not None:
            rates = [check_probability("LayerDrop", r, name="rates[]", allow_one=False)
                     for r in rates]
            if len(rates) != len(blocks):
                raise UsageError(f"LayerDrop: expected one rate per block ({len(blocks)}), "
                                 f"got {len(rates)} rates")
            top = max(rates)
            weights = [r / top if top > 0 else 1.0 for r in rates]
            p = top
        else:
            n = len(blocks)
            weights = [1.0 if schedule == "constant" else (i + 1) / n for i in range(n)]
        super().__init__()
        self.layers = nn.ModuleList(blocks)
        self.p = check_probability("LayerDrop", p, allow_one=False)
        self.schedule = schedule if rates is None else "explicit"
        self._weights = tuple(weights)
        self.generator = generator

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "p":  # set_rate and schedules write here: validated before it changes
            value = check_probability("LayerDrop", value, allow_one=False)
        super().__setattr__(name, value)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def rates(self) -> list[float]:
        """The blocks' skip rates now, ``p`` times each block's weight."""
        return [self.p * w for w in self._weights]

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        rates = self.rates
        skip = [False] * len(rates)
        if self.training and any(r > 0 for r in rates):
            # through generator_for: a checkpointed recompute draws the forward's coins
            # (or the shared generator of consistent sampling: coins are per batch already)
            g = shared_generator() or generator_for(self.generator, torch.device("cpu"),
                                                    "LayerDrop")
            device = g.device if g is not None else torch.device("cpu")
            coins = torch.rand(len(rates), generator=g, device=device).tolist()
            skip = [c < r for c, r in zip(coins, rates, strict=True)]
        for block, skipped in zip(self.layers, skip, strict=True):
            if not skipped:
                x = block(x, *args, **kwargs)
        return x

    def kept_for(self, keep: int) -> list[int]:
        """The indices :meth:`prune` keeps for ``keep`` blocks: ``j * L // keep`` for j <
        keep, evenly spaced from the first. For half the depth that is blocks 0, 2, 4,
        ...: the paper's "every other" strategy (pruning at rate p drops the layers at
        depth d = 0 mod floor(1 / p), depth counted from 1)."""
        n = len(self.layers)
        if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= n:
            raise UsageError(f"LayerDrop.prune: expected `keep` to be an int in [1, {n}], "
                             f"got keep={keep!r}")
        return [j * n // keep for j in range(keep)]

    def prune(self, keep: int | Sequence[int]) -> LayerDrop:
        """A LayerDrop of fewer blocks for inference: ``keep`` blocks chosen by
        :meth:`kept_for` (an int), or the blocks at the given indices. The blocks are
        shared, not copied; the rates stay (they act only in training)."""
        if isinstance(keep, (int, bool)):
            index = self.kept_for(keep)  # a bool is refused there
        else:
            index = sorted(set(keep))
            bad = [i for i in index if not isinstance(i, int) or not 0 <= i < len(self.layers)]
            if not index or bad:
                raise UsageError(f"LayerDrop.prune: expected indices in [0, "
                                 f"{len(self.layers)}), got {list(keep)!r}")
        pruned = LayerDrop([self.layers[i] for i in index],
                           rates=[self.rates[i] for i in index], generator=self.generator)
        pruned.train(self.training)
        return pruned

    def extra_repr(self) -> str:
        return f"p={self.p}, schedule={self.schedule!r}"
