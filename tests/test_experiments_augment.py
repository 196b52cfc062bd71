"""Augmentation: exact pixel shifts, reproducible under a seed, bad specs refused."""

from __future__ import annotations

import pytest
import torch

from dropkit.app.experiments.augment import Augment, augment, parse_augment
from dropkit.errors import UsageError


def _dots(n: int = 200) -> torch.Tensor:
    x = torch.zeros(n, 784)
    x[:, 14 * 28 + 14] = 1.0  # one bright pixel in the middle of a 28 x 28 image
    return x


def test_shifts_move_whole_pixels_within_the_bound_and_keep_values() -> None:
    out = augment(_dots(), (1, 28, 28), parse_augment("shift:2"),
                  torch.Generator().manual_seed(0))
    where = out.argmax(1)
    rows, cols = where // 28 - 14, where % 28 - 14
    assert set(rows.tolist()) == set(cols.tolist()) == {-2, -1, 0, 1, 2}  # every shift occurs
    assert torch.equal(out.sum(1), torch.ones(200))  # the pixel moved, its value intact
    assert torch.equal(out.max(1).values, torch.ones(200))


def test_the_same_seed_gives_the_same_batch_and_another_seed_another() -> None:
    aug = parse_augment("shift:2+rotate:10")
    x = torch.rand(16, 784, generator=torch.Generator().manual_seed(1))
    a = augment(x, (1, 28, 28), aug, torch.Generator().manual_seed(3))
    b = augment(x, (1, 28, 28), aug, torch.Generator().manual_seed(3))
    c = augment(x, (1, 28, 28), aug, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, x)


def test_parse_and_spec_round_trip() -> None:
    for spec in ("shift:2", "rotate:15", "shift:1+rotate:7.5"):
        assert parse_augment(spec).spec == spec
    assert parse_augment("rotate:10+shift:3") == Augment(shift=3, rotate=10.0)


@pytest.mark.parametrize("spec", ["shift:1.5", "shift:0", "shift:9", "rotate:0", "rotate:x",
                                  "flip:1", "shift:1+shift:2", ""])
def test_bad_specs_are_usage_errors_naming_augment(spec: str) -> None:
    with pytest.raises(UsageError, match="parse_augment: expected `augment` as") as caught:
        parse_augment(spec)
    assert caught.value.argument == "augment"
