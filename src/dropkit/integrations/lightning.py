"""PyTorch Lightning callbacks: dropout schedules, and Monte Carlo dropout in ``predict``.

Install with ``pip install 'dropkit[lightning]'``. Learned from Lightning's own
``StochasticWeightAveraging`` (arguments checked in ``__init__``, a start given as an
epoch or a fraction of training) and ``LearningRateMonitor`` (values sent to every
logger).

Example::

    from dropkit.integrations.lightning import DropoutSchedule, MCDropoutPrediction
    trainer = L.Trainer(max_epochs=30, callbacks=[DropoutSchedule("early:0.1,10")])
    trainer.fit(model, data)               # dropout 0.1 for 10 epochs, then off
    trainer = L.Trainer(callbacks=[MCDropoutPrediction(samples=30, summary=True)])
    out = trainer.predict(model, loader)   # per batch: mean probabilities, entropy, MI
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback
except ImportError as error:  # pragma: no cover - the extra is installed in the tests
    raise ImportError("dropkit.integrations.lightning needs Lightning: "
                      "pip install 'dropkit[lightning]'") from error

from dropkit._checks import check_int
from dropkit.errors import UsageError, UsageTypeError
from dropkit.inference.mc import STRATEGIES, mc_predict
from dropkit.inference.sampling.output import Output
from dropkit.inference.uncertainty import mutual_information, predictive_entropy
from dropkit.integrations._clock import ScheduleArg, ScheduleClock

__all__ = ["DropoutSchedule", "MCDropoutPrediction"]


class DropoutSchedule(Callback):
    """Drive the model's dropout rates by a schedule of the epoch or the optimizer step.

    Every kind of dropout site is scheduled (modules, transformers' rate attributes;
    :func:`dropkit.dropout_sites`). The rates of an epoch (or step) are applied when it
    starts and sent to every logger as ``dropout/<site>``. The rate is a function of the
    trainer's own ``current_epoch`` / ``global_step``, so ``Trainer.fit(ckpt_path=...)``
    resumes the schedule exactly; the callback's state (the last step applied) is saved
    in Lightning checkpoints too.

    Args:
        schedule: a spec (``"early:0.1,10"``, see :func:`dropkit.schedules.parse_schedule`),
            a :mod:`dropkit.schedules` schedule or any callable ``step -> p``, or a
            mapping of site name to one of those.
        interval: ``"epoch"`` or ``"step"`` (optimizer steps). Default: ``"epoch"``.
        sites: names of the sites to schedule. Default: every site with a probability.
        start: the epoch (or step) where the schedule's step 0 begins; a float in
            [0, 1) is that fraction of ``max_epochs`` (or of the estimated steps).
            Default: 0.
    """

    def __init__(self, schedule: ScheduleArg, *, interval: str = "epoch",
                 sites: Sequence[str] | None = None, start: int | float = 0) -> None:
        self.clock = ScheduleClock("DropoutSchedule", schedule, interval=interval, sites=sites,
                                   start=start)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(interval=self.clock.interval, sites=self.clock.sites)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.clock.attach(pl_module)

    def _tick(self, trainer: pl.Trainer, clock: int, total: int | float | None) -> None:
        finite = int(total) if total is not None and total != float("inf") and total >= 0 \
            else None
        rates = self.clock.tick(clock, finite)
        if self.clock.observed:  # else logged once the first batch has shown the sites
            self._log(trainer, rates)

    @staticmethod
    def _log(trainer: pl.Trainer, rates: dict[str, float]) -> None:
        for logger in trainer.loggers:
            logger.log_metrics({f"dropout/{name}": p for name, p in rates.items()},
                               step=trainer.global_step)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.clock.interval == "epoch":
            self._tick(trainer, trainer.current_epoch, trainer.max_epochs)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        # the first batch, before its forward: which stored rates the forward reads
        observed = self.clock.observe(pl_module, _input_of(batch))
        if observed is not None and self.clock.interval == "epoch":
            self._log(trainer, observed)  # this epoch's rates, as applied
        if self.clock.interval == "step":
            self._tick(trainer, trainer.global_step, trainer.estimated_stepping_batches)

    def state_dict(self) -> dict[str, Any]:
        return self.clock.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.clock.load_state_dict(state_dict)


def _input_of(batch: Any) -> Any:
    """A batch's model input: a tensor or mapping as is, the first item of a tuple/list."""
    if isinstance(batch, (tuple, list)) and batch:
        return batch[0]
    return batch


class MCDropoutPrediction(Callback):
    """Make ``trainer.predict`` return Monte Carlo dropout samples, or their summary.

    During ``predict`` the module's ``predict_step`` becomes :func:`dropkit.mc_predict`
    of the module's ``forward`` on the batch's input. Lightning's switch to eval mode
    cannot undo it: only the dropout sites sample, everything else (BatchNorm) stays in
    eval, and parameters and buffers are untouched. The module's own ``predict_step``
    is back after ``predict``.

    Args:
        samples: Monte Carlo samples T per batch. Default: 30.
        summary: return, per batch, a dict of ``probs`` (the mean of the samples'
            softmax), ``predictive_entropy`` and ``mutual_information`` (BALD) instead
            of the ``(T, N, ...)`` samples. Default: False.
        input: ``batch -> model input``. Default: the batch's first item (a tensor or
            a mapping batch as is).
        output: which tensor of a structured forward output to sample, as in
            :func:`dropkit.mc_predict`.
        strategy: as in :func:`dropkit.mc_predict`. Default: ``"auto"``.
    """

    def __init__(self, samples: int = 30, *, summary: bool = False,
                 input: Callable[[Any], Any] | None = None, output: Output = None,
                 strategy: str = "auto") -> None:
        self.samples = check_int("MCDropoutPrediction", samples, "samples", 2)
        if strategy not in STRATEGIES:
            raise UsageError(f"MCDropoutPrediction: expected `strategy` to be one of "
                             f"{STRATEGIES}, got strategy={strategy!r}")
        if input is not None and not callable(input):
            raise UsageTypeError(f"MCDropoutPrediction: expected `input` to be a callable batch -> "
                            f"input, got {type(input).__name__}")
        if not isinstance(summary, bool):
            raise UsageTypeError(f"MCDropoutPrediction: expected `summary` to be a bool, got "
                            f"{type(summary).__name__}")
        self.summary, self.input, self.output, self.strategy = summary, input, output, strategy

    def _predict_step(self, module: pl.LightningModule) -> Callable[..., Any]:
        def predict_step(batch: Any, *args: Any, **kwargs: Any) -> Tensor | dict[str, Tensor]:
            x = (self.input or _input_of)(batch)
            samples = mc_predict(module, x, self.samples, strategy=self.strategy,
                                 output=self.output)
            if not self.summary:
                return samples
            probs = samples.softmax(-1)
            return {"probs": probs.mean(0), "predictive_entropy": predictive_entropy(probs),
                    "mutual_information": mutual_information(probs)}

        return predict_step

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.predict_step = self._predict_step(pl_module)  # type: ignore[method-assign]

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.__dict__.pop("predict_step", None)  # the class's own again

