import pytest
import torch
from torch import nn

import dropkit
import dropkit.nn as dn
from dropkit import schedules as S


def _model() -> nn.Module:
    return nn.Sequential(nn.Dropout(0.9), nn.Linear(4, 4), dn.Dropout(0.9))


class TestDropoutScheduler:
    def test_applies_step_zero_on_construction(self) -> None:
        m = _model()
        dropkit.DropoutScheduler(m, S.linear(0.5, 0.0, 10))
        assert [mod.p for _, mod in dropkit.find_dropout(m)] == [0.5, 0.5]

    def test_after_k_steps_the_value_at_k(self) -> None:
        m = _model()
        sched = dropkit.DropoutScheduler(m, S.linear(0.5, 0.0, 10))
        for _ in range(4):
            rates = sched.step()
        assert rates == {"0": pytest.approx(0.3), "2": pytest.approx(0.3)}
        assert m[2].p == pytest.approx(0.3)

    def test_set_step_applies_that_step(self) -> None:
        m = _model()
        sched = dropkit.DropoutScheduler(m, S.linear(0.5, 0.0, 10))
        assert sched.set_step(6) == {"0": pytest.approx(0.2), "2": pytest.approx(0.2)}
        assert sched.last_step == 6 and m[0].p == pytest.approx(0.2)
        with pytest.raises(ValueError, match="expected `step` to be an int >= 0, got step=-1"):
            sched.set_step(-1)
        assert sched.last_step == 6

    def test_mapping_schedules_named_modules_only(self) -> None:
        m = _model()
        sched = dropkit.DropoutScheduler(m, {"2": S.late(0.4, start=2)})
        assert m[0].p == 0.9 and m[2].p == 0.0
        sched.step()
        sched.step()
        assert m[2].p == 0.4

    def test_state_dict_resumes_exactly(self) -> None:
        m = _model()
        sched = dropkit.DropoutScheduler(m, S.curriculum(0.5, 0.3))
        for _ in range(7):
            sched.step()
        state = sched.state_dict()
        fresh = _model()
        resumed = dropkit.DropoutScheduler(fresh, S.curriculum(0.5, 0.3))
        resumed.load_state_dict(state)
        assert resumed.get_rates() == sched.get_rates()
        assert sched.step() == resumed.step()
        assert fresh[0].p == m[0].p

    def test_state_dict_survives_torch_save(self, tmp_path) -> None:
        sched = dropkit.DropoutScheduler(_model(), S.constant(0.1))
        sched.step()
        torch.save(sched.state_dict(), tmp_path / "s.pt")
        other = dropkit.DropoutScheduler(_model(), S.constant(0.1))
        other.load_state_dict(torch.load(tmp_path / "s.pt"))
        assert other.last_step == 1

    def test_bad_state(self) -> None:
        sched = dropkit.DropoutScheduler(_model(), S.constant(0.1))
        with pytest.raises(ValueError, match=r"^DropoutScheduler.load_state_dict: expected "
                                             r"`last_step` to be an int >= 0, got last_step=-2"):
            sched.load_state_dict({"last_step": -2})
        with pytest.raises(TypeError, match=r"expected `last_step` to be an int, got NoneType"):
            sched.load_state_dict({})
        assert sched.last_step == 0

    def test_errors(self) -> None:
        with pytest.raises(ValueError, match="no dropout site"):
            dropkit.DropoutScheduler(nn.Linear(2, 2), S.constant(0.1))
        with pytest.raises(ValueError, match=r"\['x'\] are not dropout sites"):
            dropkit.DropoutScheduler(_model(), {"x": S.constant(0.1)})
        with pytest.raises(TypeError, match="expected callables"):
            dropkit.DropoutScheduler(_model(), 0.5)

    def test_a_schedule_out_of_range_changes_nothing(self) -> None:
        m = _model()
        sched = dropkit.DropoutScheduler(m, lambda step: 0.5 if step < 1 else 2.0)
        with pytest.raises(ValueError):
            sched.step()
        assert m[0].p == 0.5 and sched.last_step == 0


def test_an_example_input_keeps_rates_the_forward_ignores_out() -> None:
    """Falcon's pattern: a layer stores ``hidden_dropout`` and reads another rate."""

    class Stored(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)
            self.hidden_dropout = 0.1
            self.config_rate = 0.2

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.dropout(self.fc(x), self.config_rate, self.training)

    model = torch.nn.Sequential(Stored(), dn.Dropout(0.5))
    sched = dropkit.DropoutScheduler(model, S.constant(0.3), example_input=torch.randn(2, 4))
    assert sched.get_rates() == {"1": 0.3}
    assert model[0].hidden_dropout == 0.1
