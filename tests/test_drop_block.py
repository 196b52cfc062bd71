import math

import pytest
import torch

import dropkit.functional as F
import dropkit.nn as dn
from conftest import gen


def _expected_drop_fraction(p: float, block: int, spatial: tuple[int, ...]) -> float:
    """Exact E[dropped fraction]: a unit drops unless none of the corners covering it fire."""
    size = min(block, *spatial)
    valid = [s - size + 1 for s in spatial]
    gamma = p * math.prod(spatial) / (size ** len(spatial) * math.prod(valid))
    # corners covering position i along one axis: those c with c <= i <= c + size - 1
    covers = [
        torch.tensor([min(i, v - 1) - max(0, i - size + 1) + 1 for i in range(s)])
        for s, v in zip(spatial, valid, strict=True)
    ]
    n = covers[0]
    for c in covers[1:]:
        n = n[..., None] * c
    return float((1 - (1 - gamma) ** n.double()).mean())


@pytest.mark.parametrize(
    "fn, spatial, block",
    [(F.drop_block2d, (12, 12), 3), (F.drop_block2d, (9, 11), 4), (F.drop_block3d, (6, 6, 6), 2)],
)
class TestDropBlock:
    def test_drop_fraction_matches_exact_expectation(self, fn, spatial, block) -> None:
        p = 0.3
        maps = 4000
        out = fn(torch.ones(maps, 1, *spatial), p, block, generator=gen())
        per_map = (out == 0).flatten(1).double().mean(1)  # iid across maps
        expected = _expected_drop_fraction(p, block, spatial)
        se = per_map.std().item() / math.sqrt(maps)
        assert abs(per_map.mean().item() - expected) <= 5 * se

    def test_dropped_units_form_whole_blocks(self, fn, spatial, block) -> None:
        out = fn(torch.ones(16, 3, *spatial), 0.3, block, generator=gen(1))
        dropped = (out == 0).double()
        nnf = torch.nn.functional
        pool = nnf.max_pool2d if len(spatial) == 2 else nnf.max_pool3d
        # corners of fully dropped blocks, grown back into blocks, cover every dropped unit
        full = -pool(-dropped, kernel_size=block, stride=1)  # 1 where a whole block dropped
        grown = pool(nnf.pad(full, [block - 1] * 2 * len(spatial)), block, 1)
        assert torch.equal(grown, dropped)

    def test_output_rescaled_by_kept_fraction(self, fn, spatial, block) -> None:
        x = torch.ones(8, 2, *spatial, dtype=torch.float64)
        out = fn(x, 0.4, block, generator=gen(2))
        assert out.sum().item() == pytest.approx(x.numel(), rel=1e-12)
        assert len(out.unique()) == 2

    def test_unbatched_matches_batch_of_one(self, fn, spatial, block) -> None:
        x = torch.randn(3, *spatial)
        torch.testing.assert_close(
            fn(x, 0.3, block, generator=gen(3)), fn(x[None], 0.3, block, generator=gen(3))[0]
        )


class TestDropBlockArguments:
    def test_block_larger_than_map_is_clamped(self) -> None:
        out = F.drop_block2d(torch.ones(64, 1, 3, 3), 0.5, 7, generator=gen())
        per_map = out.flatten(1)
        assert ((per_map == 0).all(1) | (per_map != 0).all(1)).all()

    @pytest.mark.parametrize("block, error", [(0, ValueError), (-2, ValueError),
                                              (1.5, TypeError), (True, TypeError)])
    def test_bad_block_size(self, block, error) -> None:
        # a wrong type is a TypeError, a wrong value a ValueError (one check_int)
        with pytest.raises(error, match=r"^drop_block2d: expected `block_size` to be an int"):
            F.drop_block2d(torch.ones(1, 1, 4, 4), 0.5, block)
        with pytest.raises(error, match=r"^DropBlock2d: expected `block_size`"):
            dn.DropBlock2d(0.5, block)

    def test_wrong_rank(self) -> None:
        with pytest.raises(ValueError, match=r"^drop_block3d: expected a 4D .* got a 3D input"):
            F.drop_block3d(torch.ones(2, 4, 4), 0.5, 2)

    def test_module_repr(self) -> None:
        assert repr(dn.DropBlock2d(0.1, 5)) == "DropBlock2d(p=0.1, block_size=5)"
