import math
import pickle

import pytest

from dropkit import schedules as S
from dropkit.errors import UsageError


class TestBoundaries:
    def test_constant(self) -> None:
        s = S.constant(0.3)
        assert s(0) == s(10**6) == 0.3

    def test_linear_holds_end(self) -> None:
        s = S.linear(0.5, 0.1, 4)
        assert [s(k) for k in range(6)] == pytest.approx([0.5, 0.4, 0.3, 0.2, 0.1, 0.1])

    def test_cosine(self) -> None:
        s = S.cosine(0.4, 0.0, 10)
        assert s(0) == pytest.approx(0.4)
        assert s(5) == pytest.approx(0.2)
        assert s(10) == pytest.approx(0.0) and s(11) == pytest.approx(0.0)

    def test_early_constant(self) -> None:
        s = S.early(0.1, cutoff=50)
        assert s(0) == s(49) == 0.1
        assert s(50) == s(500) == 0.0

    def test_early_linear_ramp(self) -> None:
        s = S.early(0.2, cutoff=10, ramp="linear")
        assert s(0) == 0.2
        assert s(5) == pytest.approx(0.1)
        assert s(10) == 0.0

    def test_late(self) -> None:
        s = S.late(0.3, start=20)
        assert s(0) == s(19) == 0.0
        assert s(20) == s(100) == 0.3

    def test_late_from_zero_is_constant(self) -> None:
        assert S.late(0.3, start=0)(0) == 0.3

    def test_curriculum_rises_from_zero_towards_p(self) -> None:
        s = S.curriculum(0.5, gamma=0.1)
        assert s(0) == 0.0
        assert s(10) == pytest.approx(0.5 * (1 - math.exp(-1)))
        assert 0.4999 < s(200) <= 0.5
        assert all(s(k) < s(k + 1) for k in range(50))

    def test_stochastic_depth_rates(self) -> None:
        assert S.stochastic_depth_rates(4, 0.5) == pytest.approx([0.125, 0.25, 0.375, 0.5])
        assert S.stochastic_depth_rates(1, 0.2) == [0.2]


class TestValidation:
    @pytest.mark.parametrize(
        "make, message",
        [
            (lambda: S.constant(1.2), r"^constant: expected `p`"),
            (lambda: S.linear(0.1, -0.1, 5), r"^linear: expected `end`"),
            (lambda: S.linear(0.1, 0.2, 0), r"^linear: expected `steps` to be an int >= 1"),
            (lambda: S.cosine(2, 0.1, 3), r"^cosine: expected `start`"),
            (lambda: S.early(0.1, 0), r"^early: expected `cutoff`"),
            (lambda: S.early(0.1, 5, ramp="cubic"), r"^early: expected `ramp`"),
            (lambda: S.late(0.1, -1), r"^late: expected `start` to be an int >= 0"),
            (lambda: S.curriculum(0.5, 0), r"^curriculum: expected `gamma` > 0"),
            (lambda: S.curriculum(0.5, -1.0), r"^curriculum: expected `gamma` to be a finite"),
            (lambda: S.stochastic_depth_rates(0, 0.1), r"^stochastic_depth_rates: expected `n_"),
        ],
    )
    def test_bad_arguments(self, make, message) -> None:
        with pytest.raises(ValueError, match=message):
            make()

    @pytest.mark.parametrize("step, error", [(-1, ValueError), (1.5, TypeError),
                                             (True, TypeError)])
    def test_bad_step(self, step, error) -> None:
        with pytest.raises(error, match=r"^Linear: expected `step` to be an int"):
            S.linear(0.1, 0.2, 3)(step)

    @pytest.mark.parametrize("make, message", [
        (lambda: S.Linear(0.1, 0.2, 0), r"^linear: expected `steps` to be an int >= 1"),
        (lambda: S.Cosine(0.1, 1.5, 3), r"^cosine: expected `end`"),
        (lambda: S.Early(0.1, 5, "cubic"), r"^early: expected `ramp`"),
        (lambda: S.Late(0.1, -1), r"^late: expected `start` to be an int >= 0"),
        (lambda: S.Constant(-0.5), r"^constant: expected `p`"),
        (lambda: S.Curriculum(0.5, 0.0), r"^curriculum: expected `gamma` > 0"),
    ])
    def test_classes_validate_as_their_factories(self, make, message) -> None:
        # built directly, a schedule is checked too: Linear(0.1, 0.2, 0) would divide by 0
        with pytest.raises(ValueError, match=message):
            make()

    def test_schedules_pickle_and_read(self) -> None:
        s = S.early(0.1, 5, ramp="linear")
        assert pickle.loads(pickle.dumps(s)) == s
        assert "cutoff=5" in repr(s)


class TestParse:
    def test_specs(self) -> None:
        assert S.parse_schedule("early:0.5,20")(19) == 0.5
        assert S.parse_schedule("early:0.5,20")(20) == 0.0
        assert S.parse_schedule("linear:0.5,0,10")(5) == pytest.approx(0.25)
        assert set(S.SCHEDULES) == {"constant", "linear", "cosine", "early", "early-linear",
                                    "late", "curriculum"}

    @pytest.mark.parametrize("schedule", [
        S.constant(0.3), S.linear(0.5, 0.0, 30), S.cosine(0.1, 0.4, 7), S.early(0.5, 20),
        S.early(0.25, 3, ramp="linear"), S.late(0.1, 4), S.curriculum(0.5, 0.0123456789),
        S.constant(0),
    ])
    def test_spec_round_trips(self, schedule) -> None:
        assert S.parse_schedule(schedule.spec) == schedule

    @pytest.mark.parametrize("spec, message", [
        ("wobble:1", r"^parse_schedule: expected `schedule` as NAME:ARGS with NAME one of "
                     r"constant, linear"),
        ("early:x", r"^parse_schedule: `schedule` 'early:x': could not convert"),
        ("linear:0.1,0.2", r"^parse_schedule: `schedule` 'linear:0.1,0.2': "),
    ])
    def test_bad_spec_is_a_usage_error_naming_schedule(self, spec, message) -> None:
        with pytest.raises(UsageError, match=message) as caught:
            S.parse_schedule(spec)
        assert caught.value.argument == "schedule"
