"""Drive the rates of a model's dropout sites by schedules, resumable like LR schedulers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from dropkit._checks import check_int
from dropkit.errors import UsageError, UsageTypeError
from dropkit.tools.rates import find_dropout, set_rate
from dropkit.tools.sites import check_site_names, dropout_sites

__all__ = ["DropoutScheduler"]


class DropoutScheduler:
    """Apply ``schedule(step)`` to a model's dropout sites (:func:`dropkit.find_dropout`).

    On construction the rate of step 0 is applied; after ``k`` calls of :meth:`step` the
    rate of step ``k``. Call ``step()`` once per iteration or per epoch, as the schedule
    counts. ``state_dict()`` / ``load_state_dict()`` resume exactly, as torch's LR
    schedulers do.

    Args:
        model: the model whose dropout sites change: modules, and the float rate
            attributes of transformers' attention modules alike.
        schedule: one callable ``step -> p`` for every site whose rate is a drop
            probability, or a mapping from site name to callable (other sites keep
            their rate).
        example_input: optional; an input for a discovery pass
            (:func:`dropkit.dropout_sites`) before the first rates are applied, so that
            a rate attribute the forward never reads is not scheduled nor reported.
            Without one, :func:`dropkit.set_rate` checks at the model's next call and
            warns naming any such attribute.

    Example (early dropout, Liu et al. 2023: dropout for the first epochs only):
        >>> from dropkit import schedules
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), dropkit.nn.Dropout(0.5))
        >>> sched = DropoutScheduler(model, schedules.early(0.1, cutoff=2))
        >>> model[1].p  # step 0's rate, applied on construction
        0.1
        >>> [sched.step()["1"] for epoch in range(3)]  # after each epoch's training
        [0.1, 0.0, 0.0]
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: Callable[[int], float] | Mapping[str, Callable[[int], float]],
        *,
        example_input: Any = None,
    ) -> None:
        if example_input is not None:  # observed: a stored rate the forward ignores is no site
            dropout_sites(model, example_input)
        names = [name for name, _ in find_dropout(model)]
        if not names:
            raise UsageError("DropoutScheduler: the model has no dropout site to schedule")
        if isinstance(schedule, Mapping):
            check_site_names("DropoutScheduler", schedule, names)
            bad = [n for n, s in schedule.items() if not callable(s)]
        else:
            bad = [] if callable(schedule) else ["<all>"]
        if bad:
            raise UsageTypeError(f"DropoutScheduler: expected callables step -> p, got none "
                                 f"for {bad}")
        self.model = model
        self.schedule = schedule
        self.last_step = 0
        self._apply(0)

    def _apply(self, step: int) -> dict[str, float]:
        # set_rate checks every rate before it changes a module, so a bad value leaves
        # the model and this scheduler at the previous step.
        if isinstance(self.schedule, Mapping):
            rates = set_rate(self.model, {name: s(step) for name, s in self.schedule.items()})
        else:
            rates = set_rate(self.model, self.schedule(step))
        self.last_step, self.last_rates = step, rates
        return rates

    def step(self) -> dict[str, float]:
        """Advance one step and apply its rates; return them by module name."""
        return self._apply(self.last_step + 1)

    def set_step(self, step: int) -> dict[str, float]:
        """Apply the rates of ``step`` (a training framework's own clock); return them."""
        return self._apply(check_int("DropoutScheduler.set_step", step, "step"))

    def get_rates(self) -> dict[str, float]:
        """The rates applied at the current step."""
        return dict(self.last_rates)

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._apply(check_int("DropoutScheduler.load_state_dict", state.get("last_step"),
                              "last_step"))
