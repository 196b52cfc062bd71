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
    from transformers import (
        Trainer,
        TrainerCallback,
        TrainerControl,
        TrainerState,
        TrainingArguments,
    )
    from transformers.trainer_callback import ExportableState
except ImportError as error:  # pragma: no cover - the extra is installed in the tests
    raise ImportError("dropkit.integrations.transformers needs transformers and accelerate: "
                      "pip install 'dropkit[transformers]'") from error

import torch
from torch import Tensor, nn

from dropkit._checks import check_int
from dropkit.errors import UsageError, UsageTypeError
from dropkit.inference.mc import STRATEGIES, mc_predict
from dropkit.inference.sampling.output import Output
from dropkit.integrations._clock import ScheduleArg, ScheduleClock
from dropkit.tools.rates import find_dropout

__all__ = ["DropoutScheduleCallback", "MCDropoutPredictionMixin", "MCDropoutTrainer"]


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
        model = kwargs.get("model")
        if model is not None:  # less what a discovery pass since saw the forward not read
            listed = {name for name, _ in find_dropout(model)}
            self.rates = {name: p for name, p in self.rates.items() if name in listed}
        rates = {f"dropout/{name}": p for name, p in self.rates.items()}
        if logs is not None:
            logs.update(rates)  # what the reporting callbacks after this one see
        if state.log_history:
            state.log_history[-1].update(rates)  # the Trainer copied `logs` there already


class MCDropoutPredictionMixin:
    """Make a ``Trainer``'s ``predict`` and ``evaluate`` draw Monte Carlo dropout samples.

    The Trainer's own loops put the model in eval mode before each prediction step;
    here that step is :func:`dropkit.mc_predict` on the batch's inputs (labels left
    out): only the dropout sites sample, everything else (BatchNorm) stays in eval, and
    the model's modes, parameters and buffers are as they were after each step.
    ``predict(...).predictions`` is ``(N, T, ...)``, each example's T samples along dim 1
    (the loop concatenates batches along dim 0); with ``mc_summary``, the mean of the
    samples' softmax, ``(N, C)``. Where the batch holds labels, the loss is the negative
    log-likelihood of the MC predictive (the mean of the T softmaxes), so
    ``evaluate()["eval_loss"]`` scores the MC model, not one pass of it.

    Mix it in before ``Trainer`` (``class T(MCDropoutPredictionMixin, MyTrainer)``) or use
    :class:`MCDropoutTrainer`. Keyword arguments: ``mc_samples`` (T, default 30, at
    least 2), ``mc_strategy`` (as :func:`dropkit.mc_predict`), ``mc_output`` (which
    tensor of the model's output: default its ``logits``), ``mc_summary`` (bool).
    """

    def __init__(self, *args: Any, mc_samples: int = 30, mc_strategy: str = "auto",
                 mc_output: Output = None, mc_summary: bool = False, **kwargs: Any) -> None:
        fn = type(self).__name__
        self.mc_samples = check_int(fn, mc_samples, "mc_samples", 2)
        if mc_strategy not in STRATEGIES:
            raise UsageError(f"{fn}: expected `mc_strategy` to be one of {STRATEGIES}, got "
                             f"mc_strategy={mc_strategy!r}")
        if not isinstance(mc_summary, bool):
            raise UsageTypeError(f"{fn}: expected `mc_summary` to be a bool, got "
                            f"{type(mc_summary).__name__}")
        self.mc_strategy, self.mc_output, self.mc_summary = mc_strategy, mc_output, mc_summary
        super().__init__(*args, **kwargs)

    def prediction_step(self, model: nn.Module, inputs: dict[str, Any],
                        prediction_loss_only: bool, ignore_keys: list[str] | None = None
                        ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        inputs = self._prepare_inputs(inputs)  # type: ignore[attr-defined]
        label_names = getattr(self, "label_names", None) or ["labels"]
        labels = inputs.get(label_names[0])
        x = {k: v for k, v in inputs.items() if k not in label_names}
        samples = mc_predict(model, x, self.mc_samples, strategy=self.mc_strategy,
                             output=self.mc_output)  # (T, N, ...)
        probs = samples.float().softmax(-1).mean(0)  # (N, ..., C): the MC predictive
        loss = None
        if labels is not None:
            flat = probs.reshape(-1, probs.shape[-1]).clamp_min(torch.finfo(probs.dtype).tiny)
            loss = torch.nn.functional.nll_loss(flat.log(), labels.reshape(-1),
                                                ignore_index=-100).detach()
        if prediction_loss_only:
            return loss, None, None
        return loss, (probs if self.mc_summary else samples.transpose(0, 1)), labels


class MCDropoutTrainer(MCDropoutPredictionMixin, Trainer):
    """A ``Trainer`` whose ``predict`` and ``evaluate`` draw Monte Carlo dropout samples
    (:class:`MCDropoutPredictionMixin`).

    Example::

        trainer = MCDropoutTrainer(model=model, args=args, mc_samples=20)
        samples = trainer.predict(test_set).predictions      # (N, 20, C)
    """
