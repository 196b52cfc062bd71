"""Random draws that activation checkpointing replays exactly.

``torch.utils.checkpoint`` runs a region's forward again during backward. It restores
torch's global CPU generator (and one device's) when ``preserve_rng_state=True``, and
never a ``torch.Generator`` passed explicitly; a mask drawn again is a different mask,
and the gradient then belongs to a network that never ran. Every draw in dropkit (the
noise of :mod:`dropkit.mask`, the seeds of :mod:`dropkit.seeded`) asks
:func:`generator_for` which generator to use:

- outside a checkpointed region: the one it was given;
- in a region's forward: the one it was given (torch's default generator of the device
  for ``None``), whose state the region keeps from the first draw there on;
- in the region's recompute: a private generator started from that kept state, so the
  recompute draws the forward's numbers whatever ``use_reentrant`` and
  ``preserve_rng_state`` say, and the caller's generator stays where the forward left it.

The region is found on the Python stack, from ``torch.utils.checkpoint``'s own frames:
``CheckpointFunction.forward``/``backward`` (``use_reentrant=True``, the kept states live
on the autograd context) and ``checkpoint`` / the saved-tensor unpack hook
(``use_reentrant=False``, on the checkpoint frame). A draw during a backward pass
outside any region this module knows (another checkpoint implementation) raises rather
than train on a mask the forward never used. The stack is read only when a region can
be active: grad disabled, a backward pass running, or saved-tensor hooks installed.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import torch

from dropkit._torch_compat import checkpoint_region, graph_task_id, saved_tensor_hooks_active

__all__ = ["generator_for"]

_STATES = "_dropkit_generator_states"  # on the region: key -> (generator, state)
_REPLAYS = "_dropkit_generator_replays"  # on the region: recompute id -> key -> copy


class _Region:
    """One checkpointed region on the stack: where its kept states live, and whether this
    is its recompute (``replay`` is then the recompute's id: one per backward pass)."""

    def __init__(self, holder: Any, replay: Any) -> None:
        self.holder, self.replay = holder, replay


def _region_of(frame: FrameType) -> _Region | None:
    found = checkpoint_region(frame)
    return None if found is None else _Region(*found)


def _regions() -> list[_Region]:
    """The checkpointed regions on the stack, innermost first."""
    found = []
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        region = _region_of(frame)
        if region is not None:
            found.append(region)
        frame = frame.f_back
    return found


def _may_be_in_region() -> bool:
    # A region's forward runs with grad disabled (use_reentrant=True) or under
    # checkpoint's saved-tensor hooks (False); its recompute inside a backward pass.
    return (not torch.is_grad_enabled() or graph_task_id() != -1
            or saved_tensor_hooks_active())


def _default_generator(device: torch.device, fn: str) -> torch.Generator:
    if device.type == "cpu":
        return torch.default_generator
    module = torch.get_device_module(device.type)
    generators = getattr(module, "default_generators", None)
    if generators is None:
        raise RuntimeError(
            f"{fn}: inside torch.utils.checkpoint, dropkit keeps the state of the generator a "
            f"mask is drawn from, and cannot reach the default generator of a {device.type} "
            "device; pass `generator=`")
    index = device.index if device.index is not None else module.current_device()
    return generators[index]


def _resolve(generator: torch.Generator | None, device: torch.device, regions: list[_Region],
             fn: str) -> torch.Generator:
    if not regions:
        return generator if generator is not None else _default_generator(device, fn)
    region, outer = regions[0], regions[1:]
    key = id(generator) if generator is not None else ("default", device.type, device.index)
    states = getattr(region.holder, _STATES, None)
    if states is None:
        states = {}
        setattr(region.holder, _STATES, states)
    if region.replay is None:  # the region's forward: keep the state before its first draw
        source = _resolve(generator, device, outer, fn)
        if key not in states:
            states[key] = (source, source.get_state())
        return source
    if key not in states:
        raise RuntimeError(
            f"{fn}: torch.utils.checkpoint's recompute draws a mask that the checkpointed "
            "forward did not draw (a module switched to training mode between forward and "
            "backward?); the recompute must run the forward's computation")
    replays = getattr(region.holder, _REPLAYS, None)
    if replays is None:
        replays = {}
        setattr(region.holder, _REPLAYS, replays)
    copies = replays.setdefault(region.replay, {})
    if key not in copies:
        source, state = states[key]
        copy = torch.Generator(device=source.device)
        copy.set_state(state)
        copies[key] = copy
    return copies[key]


def generator_for(generator: torch.Generator | None, device: torch.device, fn: str
                  ) -> torch.Generator | None:
    """The generator a draw of ``fn`` on ``device`` uses: ``generator`` itself, except in a
    region of ``torch.utils.checkpoint`` (see the module's docstring)."""
    if torch.compiler.is_compiling() or not _may_be_in_region():
        return generator
    regions = _regions()
    if regions:
        return _resolve(generator, device, regions, fn)
    if graph_task_id() != -1:
        raise RuntimeError(
            f"{fn}: a dropout mask is drawn during a backward pass, outside "
            "torch.utils.checkpoint (another activation-checkpointing implementation?); "
            "dropkit cannot tell which forward's mask to replay and would train on "
            "gradients of a network that never ran. Checkpoint with torch.utils.checkpoint, "
            "whose recompute dropkit replays exactly")
    return generator
