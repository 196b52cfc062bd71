"""A dropout schedule read off a training framework's clock: the one core of the
Lightning and Hugging Face callbacks.

The rate of each step is a function of the framework's own epoch or optimizer-step
counter (minus ``start``), never of how many times a hook ran: a run resumed from a
checkpoint restores that counter, so its rates are those of an uninterrupted run by
construction. The callback's saved state (the last step applied) is kept as a check
and for logging.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

from torch import nn

from dropkit._checks import check_int
from dropkit.errors import UsageError, UsageTypeError
from dropkit.tools.rates import find_dropout
from dropkit.tools.scheduler import DropoutScheduler
from dropkit.tools.schedules import Schedule, parse_schedule
from dropkit.tools.sites import dropout_sites

__all__ = ["ScheduleClock", "INTERVALS"]

INTERVALS = ("epoch", "step")
ScheduleArg = str | Callable[[int], float] | Mapping[str, str | Callable[[int], float]]


def _one(owner: str, schedule: Any, needs_spec: bool) -> Callable[[int], float]:
    if isinstance(schedule, str):
        try:
            return parse_schedule(schedule)
        except UsageError as error:
            raise UsageError(f"{owner}: {error}") from None
    if needs_spec and not isinstance(schedule, Schedule):
        raise UsageTypeError(
            f"{owner}: expected `schedule` to be a spec such as 'early:0.1,3' or a "
            f"dropkit.schedules schedule (the Trainer restores callbacks from their "
            f"arguments as JSON), got {type(schedule).__name__}")
    if not callable(schedule):
        raise UsageTypeError(f"{owner}: expected `schedule` to be a spec, a schedule or a "
                        f"callable step -> p, got {type(schedule).__name__}")
    return schedule


class ScheduleClock:
    """Validate a callback's arguments; then drive a :class:`DropoutScheduler` by a clock.

    Args:
        owner: the callback's name, for error messages.
        schedule: a spec (``"early:0.1,3"``, :func:`dropkit.schedules.parse_schedule`), a
            schedule or callable ``step -> p``, or a mapping of site name to either.
        interval: ``"epoch"`` or ``"step"`` (optimizer steps): what a step counts.
        sites: the site names to schedule (default: every site with a probability rate).
        start: the interval at which the schedule's step 0 begins (before it, step 0's
            rates hold): an int, or a float in [0, 1) for that fraction of training.
        needs_spec: the framework saves the arguments as text, so every schedule must
            be a spec or a :class:`~dropkit.schedules.Schedule` (which has a ``spec``).
    """

    def __init__(self, owner: str, schedule: ScheduleArg, *, interval: str,
                 sites: Sequence[str] | None, start: int | float, needs_spec: bool = False
                 ) -> None:
        if interval not in INTERVALS:
            raise UsageError(f"{owner}: expected `interval` to be 'epoch' or 'step', "
                             f"got interval={interval!r}")
        if isinstance(start, bool) or not (
                (isinstance(start, Integral) and start >= 0)
                or (isinstance(start, Real) and not isinstance(start, Integral)
                    and 0.0 <= float(start) < 1.0)):
            raise UsageError(f"{owner}: expected `start` to be an int >= 0 (in {interval}s) "
                             f"or a float in [0, 1) (a fraction of training), got "
                             f"start={start!r}")
        if sites is not None:
            if isinstance(sites, str) or not all(isinstance(s, str) for s in sites):
                raise UsageTypeError(f"{owner}: expected `sites` to be a list of site names, "
                                f"got {sites!r}")
            if isinstance(schedule, Mapping):
                raise UsageError(f"{owner}: `sites` picks the sites of one schedule; a "
                                 "mapping names its sites itself: pass one or the other")
        if isinstance(schedule, Mapping):
            if not schedule:
                raise UsageError(f"{owner}: expected `schedule` to name at least one site")
            self.schedule: Callable[[int], float] | dict[str, Callable[[int], float]] = {
                name: _one(owner, s, needs_spec) for name, s in schedule.items()}
        else:
            one = _one(owner, schedule, needs_spec)
            self.schedule = {name: one for name in sites} if sites is not None else one
        self.owner: str = owner
        self.interval: str = interval
        self.start: int | float = start
        self.sites: list[str] | None = list(sites) if sites is not None else None
        self.raw: ScheduleArg = schedule
        self.scheduler: DropoutScheduler | None = None
        self.last_step: int = 0
        self._pending: int | None = None
        self.observed: bool = False

    @property
    def spec(self) -> str | dict[str, str]:
        """The schedule as text (a spec, or a mapping of specs), for JSON checkpoints."""
        def text(s: Any) -> str:
            return s if isinstance(s, str) else s.spec

        if isinstance(self.raw, Mapping):
            return {name: text(s) for name, s in self.raw.items()}
        return text(self.raw)

    def attach(self, model: nn.Module) -> dict[str, float]:
        """Build the scheduler on ``model`` (step 0's rates, or a loaded state's)."""
        self.scheduler = DropoutScheduler(model, self.schedule)
        step, self._pending = self._pending, None
        return self._apply(step if step is not None else 0)

    def observe(self, model: nn.Module, example_input: Any) -> dict[str, float] | None:
        """Once, before the first training batch's forward: a discovery pass on it, so
        that the sites are observed, then the current step's rates again, less any
        attribute the forward does not read (None: already observed, nothing redone)."""
        if self.observed or self.scheduler is None:
            return None
        self.observed = True
        dropout_sites(model, example_input)
        if isinstance(self.schedule, Mapping):  # a named site that turned out unread
            listed = {name for name, _ in find_dropout(model)}
            unread = sorted(set(self.schedule) - listed)
            if unread:
                raise UsageError(f"{self.owner}: `schedule` names {unread}, which the "
                                 "model's forward does not read (a discovery pass on the "
                                 "first batch saw it run past them): no schedule can drive "
                                 "them", "schedule")
        return self._apply(self.last_step)

    def _apply(self, step: int) -> dict[str, float]:
        if self.scheduler is None:
            raise RuntimeError(f"{self.owner}: the schedule is not attached to a model yet")
        rates = self.scheduler.set_step(step)
        self.last_step = step
        return rates

    def start_at(self, total: int | None) -> int:
        """``start`` in intervals; a fraction needs the length of training, ``total``."""
        if isinstance(self.start, Integral):
            return int(self.start)
        if total is None or total < 0 or total == float("inf"):
            raise UsageError(f"{self.owner}: `start` as a fraction ({self.start}) needs a "
                             f"known number of {self.interval}s; give it as an int")
        return int(float(self.start) * total)

    def tick(self, clock: int, total: int | None) -> dict[str, float]:
        """Apply the rates of the framework's ``clock`` (its epoch or step counter)."""
        return self._apply(max(0, clock - self.start_at(total)))

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping):
            raise UsageTypeError(f"{self.owner}.load_state_dict: expected a mapping with "
                            f"'last_step', got {type(state).__name__}")
        step = check_int(f"{self.owner}.load_state_dict", state.get("last_step"), "last_step")
        if self.scheduler is None:
            self._pending = step  # applied when the model is attached
        else:
            self._apply(step)
