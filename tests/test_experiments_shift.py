"""Shifted and out-of-distribution inputs (dropkit.app.experiments.shift)."""

from __future__ import annotations

import math

import pytest
import torch

from dropkit.app.experiments import shift as S
from dropkit.errors import UsageError

SHAPE = (1, 28, 28)


def _digits(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, *SHAPE)
    x[:, :, 6:22, 10:18] = torch.rand(n, 1, 16, 8, generator=g)  # a stroke off the edges
    return x.reshape(n, -1)


class TestMoves:
    def test_no_rotation_is_the_identity(self) -> None:
        x = _digits()
        assert torch.allclose(S.rotated(x, SHAPE, 0), x, atol=1e-6)

    def test_a_quarter_turn_is_rot90(self) -> None:
        x = _digits()
        turned = S.rotated(x, SHAPE, 90).view(-1, *SHAPE)
        images = x.view(-1, *SHAPE)
        matches = [torch.allclose(turned, torch.rot90(images, k, (2, 3)), atol=1e-5)
                   for k in (1, -1)]
        assert matches.count(True) == 1

    def test_translation_moves_pixels_right_zero_filled(self) -> None:
        x = _digits()
        moved = S.translated(x, SHAPE, 4).view(-1, *SHAPE)
        images = x.view(-1, *SHAPE)
        assert torch.equal(moved[..., 4:], images[..., :-4])
        assert bool((moved[..., :4] == 0).all())


class TestCorruptions:
    @pytest.mark.parametrize("name", list(S.CORRUPTIONS))
    def test_grow_with_intensity_and_stay_in_range(self, name) -> None:
        x = _digits()
        g = torch.Generator().manual_seed(1)
        distances = []
        for level in range(1, 6):
            out = S.corrupted(x, SHAPE, name, level, g)
            assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
            distances.append(float((out - x).norm()))
        assert distances == sorted(distances) and distances[0] > 0

    def test_noise_has_its_standard_deviation(self) -> None:
        # a grey image far from the clip: the residual's spread estimates the level, with
        # relative standard error 1 / sqrt(2 n); 5 of them
        x = torch.full((50, 784), 0.5)
        out = S.corrupted(x, SHAPE, "gaussian-noise", 1, torch.Generator().manual_seed(2))
        n = out.numel()
        assert abs(float((out - x).std()) / 0.08 - 1) <= 5 / math.sqrt(2 * n)

    def test_contrast_keeps_each_image_s_mean(self) -> None:
        x = _digits()
        out = S.corrupted(x, SHAPE, "contrast", 3, torch.Generator())
        assert torch.allclose(out.mean(1), x.mean(1), atol=1e-6)

    def test_bad_input_is_named(self) -> None:
        with pytest.raises(UsageError, match="among gaussian-noise, blur, contrast"):
            S.corrupted(_digits(), SHAPE, "fog", 1, torch.Generator())
        with pytest.raises(UsageError, match="`intensity` in 1..5, got 6"):
            S.corrupted(_digits(), SHAPE, "blur", 6, torch.Generator())
        with pytest.raises(UsageError, match=r"an image shape \(C, H, W\)"):
            S.rotated(torch.zeros(2, 13), (13,), 30)


class TestOutOfDistribution:
    def test_natural_patches_are_seeded_varied_images(self) -> None:
        a = S.natural_patches(20, SHAPE, torch.Generator().manual_seed(3))
        b = S.natural_patches(20, SHAPE, torch.Generator().manual_seed(3))
        assert torch.equal(a, b) and a.shape == (20, 784)
        assert a.min() >= 0 and a.max() <= 1
        assert float(a.std(1).min()) > 0  # no blank crop
        assert len({tuple(row[:5].tolist()) for row in a}) == 20

    def test_noise_images(self) -> None:
        x = S.noise_images(10, SHAPE, torch.Generator().manual_seed(4))
        assert x.shape == (10, 784) and 0 <= float(x.min()) and float(x.max()) <= 1
