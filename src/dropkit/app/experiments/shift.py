"""Inputs a digit network was not trained on, all offline and seeded: the test digits
under growing dataset shift, and out-of-distribution sets.

Shift (Ovadia et al. 2019, Fig. 1; corruptions in the manner of MNIST-C and ImageNet-C,
Mu & Gilmer 2019, Hendrycks & Dietterich 2019): every image rotated by one angle
(``ROTATIONS``), translated right by one number of pixels (``TRANSLATIONS``), or
corrupted at one of five intensities (``CORRUPTIONS``). Out of distribution: crops
of the natural photographs scikit-learn bundles (``load_sample_images``), and noise
images. Images are rows of ``image_shape`` with pixel values in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dropkit.app.experiments.augment import move
from dropkit.errors import UsageError

__all__ = ["ROTATIONS", "TRANSLATIONS", "CORRUPTIONS", "rotated", "translated", "corrupted",
           "natural_patches", "noise_images"]

ROTATIONS = tuple(range(0, 181, 15))  # degrees
TRANSLATIONS = tuple(range(0, 15, 2))  # pixels, rightwards
# name -> its parameter at intensities 1..5
CORRUPTIONS = {
    "gaussian-noise": (0.08, 0.12, 0.18, 0.26, 0.38),  # standard deviation (ImageNet-C's)
    "blur": (0.5, 0.75, 1.0, 1.5, 2.0),  # standard deviation of a Gaussian kernel, pixels
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),  # the factor kept of each pixel's distance
}


def _images(x: Tensor, image_shape: tuple[int, ...]) -> Tensor:
    if len(image_shape) != 3:
        raise UsageError(f"shift: expected an image shape (C, H, W), got {image_shape}",
                         "dataset")
    return x.reshape(x.shape[0], *image_shape)


def rotated(x: Tensor, image_shape: tuple[int, ...], degrees: float) -> Tensor:
    """Every image turned by ``degrees`` about its centre (bilinear, zero-filled)."""
    _images(x, image_shape)
    n = x.shape[0]
    return move(x, image_shape, torch.full((n,), math.radians(degrees)), torch.zeros(n),
                torch.zeros(n))


def translated(x: Tensor, image_shape: tuple[int, ...], pixels: int) -> Tensor:
    """Every image moved ``pixels`` to the right, zero-filled (pixel values kept)."""
    _images(x, image_shape)
    n = x.shape[0]
    return move(x, image_shape, torch.zeros(n), torch.full((n,), float(pixels)),
                torch.zeros(n), mode="nearest")


def _blur(images: Tensor, sigma: float) -> Tensor:
    radius = math.ceil(3 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-taps.pow(2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    rows = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    out = F.conv2d(images, rows, padding=(0, radius), groups=c)
    return F.conv2d(out, rows.transpose(-1, -2), padding=(radius, 0), groups=c)


def corrupted(x: Tensor, image_shape: tuple[int, ...], name: str, intensity: int,
              generator: torch.Generator) -> Tensor:
    """Every image corrupted by ``name`` at ``intensity`` 1..5, clipped to [0, 1]."""
    if name not in CORRUPTIONS:
        raise UsageError(f"corrupted: expected `name` among {', '.join(CORRUPTIONS)}, got "
                         f"{name!r}", "name")
    if intensity not in range(1, 6):
        raise UsageError(f"corrupted: expected `intensity` in 1..5, got {intensity!r}",
                         "intensity")
    level = CORRUPTIONS[name][intensity - 1]
    images = _images(x, image_shape)
    if name == "gaussian-noise":
        out = images + level * torch.randn(images.shape, generator=generator,
                                           dtype=images.dtype)
    elif name == "blur":
        out = _blur(images, level)
    else:
        mean = images.mean((1, 2, 3), keepdim=True)
        out = (images - mean) * level + mean
    return out.clamp(0, 1).reshape(x.shape)


def natural_patches(n: int, image_shape: tuple[int, ...], generator: torch.Generator
                    ) -> Tensor:
    """``n`` crops of scikit-learn's sample photographs (a Chinese temple, a flower),
    grey, shrunk 8x so that a crop holds objects at about a digit's scale, in [0, 1]."""
    from sklearn.datasets import load_sample_images

    c, h, w = image_shape
    photos = [torch.tensor(p, dtype=torch.float32).mean(-1) / 255.0
              for p in load_sample_images().images]
    small = [F.avg_pool2d(p[None, None], 8)[0, 0] for p in photos]
    out = torch.empty(n, c, h, w)
    for i in range(n):
        photo = small[int(torch.randint(len(small), (1,), generator=generator))]
        top = int(torch.randint(photo.shape[0] - h + 1, (1,), generator=generator))
        left = int(torch.randint(photo.shape[1] - w + 1, (1,), generator=generator))
        out[i] = photo[top : top + h, left : left + w]
    return out.reshape(n, -1)


def noise_images(n: int, image_shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """``n`` images of independent uniform pixels in [0, 1]."""
    return torch.rand(n, math.prod(image_shape), generator=generator)
