"""Explicit randomness for calls over a whole model (house rule 7).

A model's own code draws from torch's default generators (attention dropout, torch's
dropout modules, raw noise), where no ``generator=`` argument reaches. So a call that
takes ``generator`` forks the default generators of the CPU and of the model's device,
seeds them from one draw of ``generator``, and gives them back unchanged on exit: every
draw of the call follows from ``generator``, and the caller's global stream is left as
it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from dropkit.errors import UsageTypeError

__all__ = ["drawing_from", "seed_from"]


def seed_from(fn: str, generator: torch.Generator | None, high: int = 2**31) -> int:
    """A seed in [0, ``high``) drawn from ``generator`` (torch's global one if None)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise UsageTypeError(f"{fn}: expected `generator` to be a torch.Generator or None, got "
                        f"{type(generator).__name__}")
    device = generator.device if generator is not None else None
    return int(torch.randint(0, high, (), generator=generator, device=device))


@contextmanager
def drawing_from(fn: str, generator: torch.Generator | None,
                 device: torch.device) -> Iterator[None]:
    """Inside, the default generators of the CPU and of ``device`` draw a stream seeded
    from ``generator``; on exit they are as they were. None: nothing changes."""
    if generator is None:
        yield
        return
    seed = seed_from(fn, generator, 2**62)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()
            ] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield
