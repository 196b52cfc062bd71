"""The argument checks every function shares: one definition each, one wording."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import gen
from dropkit._checks import (
    check_call,
    check_floating,
    check_generator,
    check_int,
    check_nonnegative,
    check_probability,
    normalize_dims,
)


class TestCheckInt:
    @pytest.mark.parametrize("value", [0, 3, 2**70])
    def test_accepts_ints_and_returns_them(self, value: int) -> None:
        assert check_int("f", value, "n") == value

    @pytest.mark.parametrize("value", [1.0, True, "2", None])
    def test_a_wrong_type_is_a_type_error(self, value) -> None:
        with pytest.raises(TypeError, match=rf"^f: expected `n` to be an int, got "
                                            rf"{type(value).__name__}: n="):
            check_int("f", value, "n")

    def test_a_wrong_value_is_a_value_error(self) -> None:
        with pytest.raises(ValueError, match=r"^f: expected `n` to be an int >= 1, got n=0$"):
            check_int("f", 0, "n", 1)
        with pytest.raises(ValueError, match=r"^f: expected `n` to be an int in \[0, 4\), "
                                             r"got n=4$"):
            check_int("f", 4, "n", 0, 4)


class TestCheckProbability:
    @pytest.mark.parametrize("p", [-0.1, 1.5, math.nan, math.inf])
    def test_out_of_range(self, p: float) -> None:
        with pytest.raises(ValueError, match=r"^f: expected `p` to be a drop probability in "
                                             r"\[0, 1\]"):
            check_probability("f", p)

    def test_one_can_be_excluded(self) -> None:
        assert check_probability("f", 1) == 1.0
        with pytest.raises(ValueError, match=r"in \[0, 1\), got p=1"):
            check_probability("f", 1, allow_one=False)

    def test_wrong_type(self) -> None:
        with pytest.raises(TypeError, match=r"^f: expected `p` to be a float drop probability, "
                                            r"got str"):
            check_probability("f", "0.5")


class TestTensors:
    def test_floating_only_where_it_draws(self) -> None:
        ids = torch.arange(3)
        check_floating("f", ids, draws=False)  # eval or p = 0: any dtype
        with pytest.raises(TypeError, match=r"^f: expected a floating-point `input`"):
            check_floating("f", ids)
        with pytest.raises(TypeError, match=r"^f: expected `input` to be a torch.Tensor, got "
                                            r"list"):
            check_floating("f", [1.0], draws=False)

    def test_generator_device(self) -> None:
        check_generator("f", None, torch.ones(1))
        check_generator("f", gen(), torch.ones(1))
        with pytest.raises(ValueError, match=r"^f: expected a generator on device 'meta'"):
            check_generator("f", gen(), torch.ones(1, device="meta"))

    def test_check_call_is_the_three_in_order(self) -> None:
        assert check_call("f", torch.ones(2), 0.25, True, None) == 0.25
        assert check_call("f", torch.arange(2), 0.25, False, None) == 0.25
        with pytest.raises(ValueError, match=r"^f: expected `p`"):
            check_call("f", "not even a tensor", 2.0, True, None)  # p first
        with pytest.raises(TypeError, match=r"^f: expected a floating-point `weight`"):
            check_call("f", torch.arange(2), 0.5, True, None, name="weight")

    def test_nonnegative_and_dims(self) -> None:
        assert check_nonnegative("f", 2, "std") == 2.0
        with pytest.raises(ValueError, match=r"^f: expected `std` to be a finite value >= 0"):
            check_nonnegative("f", -1.0, "std")
        assert normalize_dims("f", -1, 3) == (2,)
