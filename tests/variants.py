"""The table of dropout variants that the cross-variant semantics tests run over.

Each row says how to call the function and build the module on a valid input, so that
one test checks one rule for every variant (house rule 10: exact invariants, eval
identity, errors, statistics with a fixed generator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

import dropkit.functional as F
import dropkit.nn as dn

IDS = torch.tensor([[0, 3, 3, 7], [1, 2, 9, 3]])


@dataclass(frozen=True)
class Variant:
    name: str
    # (input, p, training, generator) -> output
    call: Callable[[Tensor, float, bool, torch.Generator | None], Tensor]
    shape: tuple[int, ...]
    # (p, generator=) -> module taking the input; None where the module wraps another
    # (EmbeddingDropout, DropConnect: tested in their own files)
    module: Callable[..., nn.Module] | None
    # every output is 0 or input / (1 - p), and the gradient is mask / (1 - p)
    inverted: bool = True
    p_one: bool = True  # p = 1 is defined (zeros)
    # what training=False returns; None: the input itself
    eval_fn: Callable[[Tensor], Tensor] | None = None
    channels_last: bool = field(default=False)


VARIANTS = [
    Variant(
        "dropout", lambda x, p, t, g: F.dropout(x, p, t, generator=g), (8, 16),
        lambda p, generator=None: dn.Dropout(p, generator=generator),
    ),
    Variant(
        "dropout1d", lambda x, p, t, g: F.dropout1d(x, p, t, generator=g), (4, 6, 10),
        lambda p, generator=None: dn.Dropout1d(p, generator=generator),
    ),
    Variant(
        "dropout2d", lambda x, p, t, g: F.dropout2d(x, p, t, generator=g), (4, 6, 5, 5),
        lambda p, generator=None: dn.Dropout2d(p, generator=generator), channels_last=True,
    ),
    Variant(
        "dropout3d", lambda x, p, t, g: F.dropout3d(x, p, t, generator=g), (2, 6, 3, 4, 4),
        lambda p, generator=None: dn.Dropout3d(p, generator=generator), channels_last=True,
    ),
    Variant(
        "alpha_dropout", lambda x, p, t, g: F.alpha_dropout(x, p, t, generator=g), (8, 16),
        lambda p, generator=None: dn.AlphaDropout(p, generator=generator), inverted=False,
    ),
    Variant(
        "feature_alpha_dropout",
        lambda x, p, t, g: F.feature_alpha_dropout(x, p, t, generator=g), (4, 6, 5, 5),
        lambda p, generator=None: dn.FeatureAlphaDropout(p, generator=generator),
        inverted=False, channels_last=True,
    ),
    Variant(
        "gaussian_dropout", lambda x, p, t, g: F.gaussian_dropout(x, p, t, generator=g), (8, 16),
        lambda p, generator=None: dn.GaussianDropout(p, generator=generator),
        inverted=False, p_one=False, channels_last=False,
    ),
    Variant(
        "locked_dropout", lambda x, p, t, g: F.locked_dropout(x, p, t, generator=g), (5, 4, 8),
        lambda p, generator=None: dn.LockedDropout(p, generator=generator),
    ),
    Variant(
        "embedding_dropout",
        lambda w, p, t, g: F.embedding_dropout(IDS, w, p, t, generator=g), (10, 4),
        None, eval_fn=lambda w: torch.nn.functional.embedding(IDS, w), inverted=False,
    ),
    Variant(
        "drop_path", lambda x, p, t, g: F.drop_path(x, p, t, generator=g), (16, 3, 4),
        lambda p, generator=None: dn.DropPath(p, generator=generator),
    ),
    Variant(
        "drop_block2d", lambda x, p, t, g: F.drop_block2d(x, p, 3, t, generator=g), (4, 6, 8, 8),
        lambda p, generator=None: dn.DropBlock2d(p, 3, generator=generator),
        inverted=False, channels_last=True,
    ),
    Variant(
        "drop_block3d", lambda x, p, t, g: F.drop_block3d(x, p, 2, t, generator=g),
        (2, 3, 5, 5, 5),
        lambda p, generator=None: dn.DropBlock3d(p, 2, generator=generator),
        inverted=False, channels_last=True,
    ),
    Variant(
        "drop_connect", lambda w, p, t, g: F.drop_connect(w, p, t, generator=g), (6, 5),
        None,
    ),
]

BY_NAME = {v.name: v for v in VARIANTS}
