"""``dropkit train``: one configuration, with its learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.distributed as dist

from dropkit._dist import world
from dropkit.app.experiments.engine import RunOptions, train
from dropkit.app.experiments.report import pct, plt, save_figure

__all__ = ["run_train", "plot_history"]


def plot_history(history: list[dict], path: Path, title: str) -> Path:
    fig, ax = plt().subplots(figsize=(6.5, 4))
    scored = [r for r in history if "test_error" in r]
    epochs = [r["epoch"] for r in scored]
    ax.plot(epochs, [r["test_error"] for r in scored], label="test error")
    ax.plot(epochs, [r["train_error"] for r in scored], ls="--", label="train error")
    if all("val_error" in r for r in history):
        ax.plot([r["epoch"] for r in history], [r["val_error"] for r in history], ls=":",
                label="validation error")
    if "best_epoch" in history[-1]:  # early stopping: the epoch whose weights are kept
        best = history[-1]["best_epoch"]
        stop = " (stopped)" if history[-1].get("stopped") else ""
        ax.axvline(best, color="0.4", lw=1, label=f"best epoch {best}{stop}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("error")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def run_train(options: RunOptions | None = None, *, resume: bool = False,
              **settings: Any) -> list[dict]:
    """Train one configuration into ``options.out`` (default runs/train) and plot its
    curves; return its history.

    ``options``: the data set, model, epochs (default 60), folder, progress, log and
    further settings, as the other commands take them (:class:`RunOptions`); ``settings``:
    :class:`TrainConfig` fields over its overrides (``dropout``, ``seed``, ``schedule``, ...).
    ``resume`` continues the run in the folder from its last checkpoint.
    """
    options = options if options is not None else RunOptions()
    config = options.config(60, **settings)
    out = Path(options.folder("runs/train"))
    try:
        history = train(config, out, resume=resume, progress=options.progress,
                        data=options.data, log=options.log)
        if world()[0] != 0:
            return history
        if history:
            plot_history(history, out / "curves.png", f"{config.dataset}, {config.model}, "
                         f"dropout {config.input_dropout:g} in / {config.dropout:g} hidden")
            last = history[-1]
            options.log(f"epoch {last['epoch']}: train error {pct(last['train_error'])}, "
                        f"test error {pct(last['test_error'])}; results in {out}")
        return history
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
