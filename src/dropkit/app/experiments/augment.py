"""Data augmentation of training images: random translations (the classic MNIST
augmentation) and rotations, drawn from the run's own generator.

``"shift:2"`` moves each image by a whole number of pixels in [-2, 2] along each axis,
zero-filled (a nearest-neighbour resampling at exact pixel centres: the pixel values are
kept exactly); ``"rotate:10"`` turns each image by an angle in [-10, 10] degrees
(bilinear); ``"shift:2+rotate:10"`` does both. Built on ``torch.nn.functional``'s
``affine_grid`` and ``grid_sample``, one call per batch. Training batches only: the
engine never augments what it evaluates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dropkit.errors import UsageError

__all__ = ["Augment", "parse_augment", "augment", "move"]


@dataclass(frozen=True)
class Augment:
    shift: int = 0  # pixels, each axis
    rotate: float = 0.0  # degrees

    @property
    def spec(self) -> str:
        parts = ([f"shift:{self.shift}"] if self.shift else []) + \
            ([f"rotate:{self.rotate:g}"] if self.rotate else [])
        return "+".join(parts)


def parse_augment(spec: str) -> Augment:
    """``"shift:K"``, ``"rotate:DEG"`` or both joined by ``+``; a bad spec raises
    :class:`~dropkit.errors.UsageError` naming ``augment``.

    >>> parse_augment("shift:2+rotate:10")
    Augment(shift=2, rotate=10.0)
    """
    def bad(why: str) -> UsageError:
        return UsageError(f"parse_augment: expected `augment` as shift:K, rotate:DEG or "
                          f"shift:K+rotate:DEG, got {spec!r}: {why}", "augment")

    fields: dict[str, float] = {}
    for part in spec.split("+"):
        name, _, value = part.partition(":")
        if name not in ("shift", "rotate") or name in fields:
            raise bad(f"{name!r} is not shift or rotate, or comes twice")
        try:
            number = float(value)
        except ValueError:
            raise bad(f"{value!r} is not a number") from None
        if name == "shift" and not (1 <= number <= 8 and number == int(number)):  # NaN fails
            raise bad("a shift is a whole number of pixels in [1, 8]")
        if name == "rotate" and not 0 < number <= 180:
            raise bad("a rotation is a number of degrees in (0, 180]")
        fields[name] = number
    return Augment(shift=int(fields.get("shift", 0)), rotate=float(fields.get("rotate", 0.0)))


def augment(x: Tensor, image_shape: tuple[int, ...], aug: Augment,
            generator: torch.Generator) -> Tensor:
    """A randomly moved copy of the batch ``x`` (flat rows or images of ``image_shape``)."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) \
        * math.radians(aug.rotate)
    shift = torch.randint(-aug.shift, aug.shift + 1, (2, n), generator=generator) \
        if aug.shift else torch.zeros(2, n)
    return move(x, image_shape, angle, shift[0], shift[1],
                mode="bilinear" if aug.rotate else "nearest")


def move(x: Tensor, image_shape: tuple[int, ...], angle: Tensor, dx: Tensor, dy: Tensor,
         mode: str = "bilinear") -> Tensor:
    """The batch ``x`` (flat rows or images of ``image_shape``), each image turned by its
    ``angle`` (radians, about its centre) and moved by (``dx``, ``dy``) pixels (right,
    down), zero-filled; ``mode``: ``grid_sample``'s resampling."""
    n = x.shape[0]
    images = x.reshape(n, *image_shape) if len(image_shape) == 3 else \
        x.reshape(n, 1, *image_shape)
    height, width = images.shape[-2:]
    theta = torch.zeros(n, 2, 3, dtype=images.dtype)
    angle = angle.double()
    theta[:, 0, 0] = theta[:, 1, 1] = angle.cos().to(images.dtype)
    theta[:, 0, 1] = -angle.sin().to(images.dtype)
    theta[:, 1, 0] = angle.sin().to(images.dtype)
    # the output pixel at p samples the input at p - shift: content moves by +shift
    theta[:, 0, 2] = -2.0 * dx.to(images.dtype) / width
    theta[:, 1, 2] = -2.0 * dy.to(images.dtype) / height
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    moved = F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return moved.reshape(x.shape)
