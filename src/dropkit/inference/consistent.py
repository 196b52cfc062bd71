"""Consistent Monte Carlo dropout: each sample is one network, the same for every input.

``mc_predict`` normally draws each input's masks independently, which is what
uncertainty per input needs. BatchBALD's joint entropy (Kirsch et al. 2019, their
"consistent MC dropout") needs more: in sample t, every input of the batch, of every
chunk and of every later call sees the same dropped units. Pass t runs inside
:func:`dropkit.mask.shared_draws` with one generator seeded from ``(seed, t)``: every draw
of dropkit's mask primitive comes from it with the batch dim broadcast (size 1), so the
draws depend on neither the batch nor its size. Torch's own dropout modules are rerouted
to dropkit's functional forms, which draw through the primitive.

There is no code per variant: every dropkit module shares its draw by construction
(element, channel, alpha, Gaussian, DropPath, LockedDropout, DropBlock, ConcreteDropout,
DropConnect, EmbeddingDropout, the variational RNNs, LayerDrop's coins; the seeded
backend takes the primitive while a draw is shared). What draws outside the primitive
cannot share this way and is refused by name before any pass: attention and functional
dropout called from other modules' code, torch's RNN dropout (drawn inside its kernel),
raw noise (``torch.randn`` in a model's code) and foreign dropout classes. The first call
for a model and input signature also observes it (:func:`dropkit.mc_predict`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

import dropkit.nn as dn
from dropkit.errors import UsageError
from dropkit.mask import shared_draws
from dropkit.tools.sites import Site

__all__ = ["check_sites", "consistent_passes", "pass_seed"]

# Torch's dropout modules, rerouted to dropkit's functional forms (exact classes: a
# subclass may draw otherwise).
TORCH_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                 nn.FeatureAlphaDropout)
# dropkit's modules: every draw of theirs goes through dropkit.mask.
DROPKIT_MODULES = tuple(v for v in vars(dn).values()
                        if isinstance(v, type) and issubclass(v, nn.Module))


def _shares(site: Site) -> bool:
    """Whether the site's every draw goes through the primitive from its own forward (a
    module whose rate other code reads, as attention passing ``self.dropout.p`` to
    ``scaled_dot_product_attention``, draws elsewhere)."""
    module = site.module
    own_gate = all(g is module for _, g in site.gates)
    primitive = type(module) in TORCH_DROPOUT or isinstance(module, DROPKIT_MODULES)
    return site.kind in ("module", "attribute") and own_gate and primitive


def check_sites(sites: list[Site]) -> None:
    """Raise naming every drawing site that cannot share its draw over the batch."""
    refused = [s.describe() for s in sites if s.draws and not _shares(s)]
    if refused:
        raise UsageError(
            "mc_predict: consistent sampling needs every dropout site to draw one mask for "
            f"the whole batch, and {', '.join(refused)} cannot (attention and functional "
            "dropout, torch's RNN dropout, raw noise and foreign dropout classes draw per "
            "input, outside dropkit's mask primitive); use consistent=False, or dropkit "
            "modules there")


def pass_seed(seed: int, t: int) -> int:
    """The seed of network ``t`` of the networks ``seed`` names."""
    return seed * 1_000_003 + t


def consistent_passes(run: Callable[[], Tensor], samples: int, seed: int,
                      device: torch.device) -> Tensor:
    """``samples`` passes of ``run()``, pass t drawing every mask from the seed
    ``(seed, t)`` with the batch broadcast; ``(samples, *output.shape)``. The caller
    switches the sites on and reroutes torch's dropout calls."""
    g = torch.Generator(device=device)
    outs = []
    with shared_draws(g):
        for t in range(samples):
            g.manual_seed(pass_seed(seed, t))
            outs.append(run())
    return torch.stack(outs)
