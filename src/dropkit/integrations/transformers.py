"""A Hugging Face ``Trainer`` callback that drives dropout rates by a schedule.

Install with ``pip install 'dropkit[transformers]'`` (transformers and accelerate).

Example::

    from dropkit.integrations.transformers import DropoutScheduleCallback
    trainer = Trainer(model, args, train_dataset=data,
                      callbacks=[DropoutScheduleCallback("early:0.1,2")])
    trainer.train()   # attention and hidden dropout at 0.1 for 2 epochs, then off
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_callback import ExportableState
except ImportError as error:  # pragma: no cover - the extra is installed in the tests
    raise ImportError("dropkit.integrations.transformers needs transformers and accelerate: "
                      "pip install 'dropkit[transformers]'") from error

from dropkit.integrations._clock import ScheduleArg, ScheduleClock

__all__ = ["DropoutScheduleCallback"]


class DropoutScheduleCallback(TrainerCallback, ExportableState):
    """Drive a transformers model's dropout rates by a schedule of the epoch or step.

    The rates live where the model keeps them: ``nn.Dropout`` modules and the float
    attributes its attention code reads (``attention_dropout``, ``dropout``, ...), all
    found by :func:`dropkit.dropout_sites`. An epoch's (or step's) rates are applied
    when it begins and added to the Trainer's logs (and ``state.log_history``) as
    ``dropout/<site>``. The rate is a
    function of the Trainer's own ``state.epoch`` / ``state.global_step``, which
    ``resume_from_checkpoint`` restores, so a resumed run follows the schedule exactly;
    the callback's arguments and last step are saved in ``trainer_state.json`` too and
    restored with ``TrainingArguments(restore_callback_states_from_checkpoint=True)``.

    Args:
        schedule: a spec (``"early:0.1,2"``) or a :mod:`dropkit.schedules` schedule, or a
            mapping of site name to one of those. Text, because the Trainer rebuilds
            callbacks from their arguments stored as JSON; a plain callable is refused.
        interval: ``"epoch"`` or ``"step"`` (optimizer steps). Default: ``"epoch"``.
        sites: names of the sites to schedule. Default: every site with a probability.
        start: the epoch (or step) where the schedule's step 0 begins; a float in
            [0, 1) is that fraction of training. Default: 0.
    """

    def __init__(self, schedule: ScheduleArg, *, interval: str = "epoch",
                 sites: Sequence[str] | None = None, start: int | float = 0) -> None:
        self.clock = ScheduleClock("DropoutScheduleCallback", schedule, interval=interval,
                                   sites=sites, start=start, needs_spec=True)
        self.rates: dict[str, float] = {}

    @property
    def last_step(self) -> int:
        return self.clock.last_step

    @last_step.setter
    def last_step(self, value: int) -> None:  # the Trainer restores attributes by setattr
        self.clock.load_state_dict({"last_step": value})

    def state(self) -> dict[str, Any]:
        return {"args": {"schedule": self.clock.spec, "interval": self.clock.interval,
                         "sites": self.clock.sites, "start": self.clock.start},
                "attributes": {"last_step": self.last_step}}

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, model: Any = None, **kwargs: Any) -> None:
        if model is None:
            raise RuntimeError("DropoutScheduleCallback: the Trainer passed no model to "
                               "on_train_begin")
        self.rates = self.clock.attach(model)

    def _total(self, args: TrainingArguments, state: TrainerState) -> int | None:
        if self.clock.interval == "step":
            return state.max_steps if state.max_steps and state.max_steps > 0 else None
        return math.ceil(args.num_train_epochs) if args.num_train_epochs > 0 else None

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, **kwargs: Any) -> None:
        if self.clock.interval == "epoch":
            epoch = math.floor((state.epoch or 0.0) + 1e-9)  # epochs done so far
            self.rates = self.clock.tick(epoch, self._total(args, state))

    def on_step_begin(self, args: TrainingArguments, state: TrainerState,
                      control: TrainerControl, **kwargs: Any) -> None:
        if self.clock.interval == "step":
            self.rates = self.clock.tick(state.global_step, self._total(args, state))

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        rates = {f"dropout/{name}": p for name, p in self.rates.items()}
        if logs is not None:
            logs.update(rates)  # what the reporting callbacks after this one see
        if state.log_history:
            state.log_history[-1].update(rates)  # the Trainer copied `logs` there already
