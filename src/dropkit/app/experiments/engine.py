"""Training that is seeded, resumable after a kill, and scales out with torchrun.

Run::

    dropkit train --dataset mnist5k --dropout 0.5 --input-dropout 0.2 --epochs 60 --out runs/a
    dropkit train --epochs 80 --out runs/a --resume          # continues from the checkpoint
    torchrun --nproc_per_node=2 -m dropkit train --out runs/ddp   # DistributedDataParallel

Every epoch appends its metrics to ``metrics.jsonl`` and writes ``checkpoint.pt``, both
atomically (write, fsync, rename): a kill at any moment leaves the last complete epoch.
The checkpoint holds the model, the optimizer, the dropout scheduler and every random
stream (data order, dropout masks), so ``train --epochs 2`` then ``--epochs 4 --resume``
ends with the metrics of a straight ``--epochs 4``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from dropkit._trace import only_training
from dropkit.app import models
from dropkit.app.experiments.augment import Augment, augment, parse_augment
from dropkit.app.experiments.data import DATASETS, FILE_SETS, Dataset, load_dataset
from dropkit.app.experiments.early_stopping import EarlyStopping
from dropkit.app.experiments.io import (
    atomic_write_text,
    check_manifest,
    check_writable_dir,
    first_sentence,
    load_checked,
    save_checked,
)
from dropkit.app.experiments.memory import FLOAT_BYTES, check_fits_memory
from dropkit.app.models import MODELS
from dropkit.errors import UsageError
from dropkit.inference.rdrop import rdrop_forward, rdrop_loss
from dropkit.inference.sampling.batch import batchable
from dropkit.mask import bernoulli_mask
from dropkit.tools import schedules
from dropkit.tools.scheduler import DropoutScheduler
from dropkit.tools.seed_plan import SeedPlan
from dropkit.tools.sites import dropout_sites

__all__ = ["MC_STRATEGY",
           "TrainConfig", "train", "train_seeds", "prepare", "dataset_for", "build_model",
           "evaluate", "RunOptions", "predict", "load_final", "MODELS", "validation_split",
           "check_fits", "load_weights", "check_samples"]

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"  # the best epoch's weights under early stopping
VAL_SPLIT_SEED = 20141  # one validation split for every run and seed of a data set
TRAIN_BACKENDS = ("torch", "seeded")
METRICS = "metrics.jsonl"
RUN_SEED_LIMIT = 2**32  # a run's seed; its streams are derived by multiplying it
RESUMABLE = frozenset({"epochs", "download"})  # what a resumed run may change
# The experiments' Monte Carlo strategy, fixed: mc_predict's "auto" chooses by timing,
# and another choice on another machine (or a resumed process) would draw other samples
# from the same seed. The loop is the reference recipe and runs every model.
MC_STRATEGY = "loop"


@dataclass
class TrainConfig:
    """One training run. Defaults follow Srivastava et al. 2014's MNIST networks."""

    dataset: str = "mnist5k"  # see dropkit.app.experiments.data.DATASETS
    model: str = "mlp"  # "mlp": MLPWithDropout; "cnn": ConvNetWithDropout; see MODELS
    dropout: float = 0.5  # hidden units (the paper's 0.5)
    input_dropout: float = 0.2  # inputs (the paper's 0.2); the CNN's spatial dropout
    epochs: int = 60
    seed: int = 0  # model initialisation, data order and dropout masks
    batch_size: int = 100  # global: split across ranks under torchrun
    lr: float = 0.05
    momentum: float = 0.9
    hidden: int = 1024  # units per hidden layer (784-1024-1024-10 by default)
    schedule: str | None = None  # e.g. "early:0.5,20" (dropkit.schedules.parse_schedule)
    train_size: int | None = None  # use only the first N training examples
    data_root: str | None = None  # folder of IDX files for mnist / fashion-mnist
    download: bool = False  # fetch missing IDX files (SHA-256 checked)
    eval_every: int = 1  # evaluate every k epochs (and after the last)
    # "torch": masks from one generator per rank, its state saved in the checkpoint;
    # "seeded": the seeded backend, masks from a SeedPlan (the checkpoint saves the step)
    backend: str = "torch"
    val_fraction: float = 0.0  # carved from the training split (a fixed split), never test
    early_stopping: int | None = None  # patience in epochs on validation loss
    min_delta: float = 0.0  # the least decrease of validation loss that counts
    augment: str | None = None  # e.g. "shift:2" (dropkit.app.experiments.augment)
    rdrop: float = 0.0  # R-Drop's alpha: two passes per batch and their symmetric KL
    layerdrop: float = 0.0  # LayerDrop's rate over the residual blocks (model "resmlp")

    def validate(self) -> None:
        """Raise a :class:`~dropkit.errors.UsageError` naming the first bad field."""

        def bad(name: str, expected: str) -> UsageError:
            return UsageError(f"TrainConfig: expected `{name}` to be {expected}, "
                              f"got {name}={getattr(self, name)!r}", name)

        if self.dataset not in DATASETS:
            raise bad("dataset", f"one of {', '.join(DATASETS)}")
        if self.model not in MODELS:
            raise bad("model", f"one of {', '.join(MODELS)}")
        for name in ("dropout", "input_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise bad(name, "a drop probability in [0, 1)")
        for name in ("epochs", "batch_size", "hidden", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name, "an int >= 1")
        if self.train_size is not None and self.train_size < 1:
            raise bad("train_size", "None or an int >= 1")
        if not 0 < self.lr < math.inf:
            raise bad("lr", "a finite learning rate > 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not (
                0 <= self.seed < RUN_SEED_LIMIT):
            raise bad("seed", "an int in [0, 2**32) (the run derives its streams from it)")
        if self.backend not in TRAIN_BACKENDS:
            raise bad("backend", f"one of {', '.join(TRAIN_BACKENDS)}")
        if isinstance(self.val_fraction, bool) or not 0.0 <= self.val_fraction <= 0.5:
            raise bad("val_fraction", "a fraction of the training split in [0, 0.5]")
        if self.early_stopping is not None:
            value = self.early_stopping
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad("early_stopping", "None or a patience, an int >= 1")
            if self.val_fraction <= 0:
                raise bad("early_stopping", "None unless `val_fraction` > 0 gives a validation "
                          "split to watch")
        if isinstance(self.min_delta, bool) or not 0 <= self.min_delta < math.inf:
            raise bad("min_delta", "a finite number >= 0")
        if isinstance(self.rdrop, bool) or not 0 <= self.rdrop < math.inf:
            raise bad("rdrop", "R-Drop's alpha, a finite number >= 0")
        if not 0.0 <= self.layerdrop < 1.0:
            raise bad("layerdrop", "a drop probability in [0, 1)")
        if self.layerdrop and self.model != "resmlp":
            raise bad("layerdrop", "0 unless `model` is 'resmlp' (the model with residual "
                      "blocks to skip)")
        for name in ("data_root", "download"):
            if getattr(self, name) not in (None, False) and self.dataset not in FILE_SETS:
                raise bad(name, f"unset unless `dataset` is one of {', '.join(FILE_SETS)} (read "
                          f"from files; {self.dataset!r} comes with its package)")
        if self.augment is not None:
            parse_augment(self.augment)
        if self.schedule is not None:
            schedules.parse_schedule(self.schedule)


def build_model(config: TrainConfig, data: Dataset, generator: torch.Generator) -> nn.Module:
    """:func:`dropkit.app.models.build_model` for ``config`` on ``data``."""
    return models.build_model(
        config.model, n_features=data.n_features, n_outputs=data.n_classes,
        image_shape=data.image_shape, regression=data.task == "regression",
        hidden=config.hidden, dropout=config.dropout, input_dropout=config.input_dropout,
        generator=generator, backend=config.backend, layerdrop=config.layerdrop)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch: int = 1000) -> Tensor:
    """The model's outputs on ``x`` in eval mode; every module's mode is restored after,
    also after an exception (a mixed state, such as MC dropout's, comes back as it was)."""
    with only_training(model, []):
        return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])


def evaluate(model: nn.Module, x: Tensor, y: Tensor, data: Dataset, batch: int = 1000
             ) -> tuple[float, float]:
    """(loss, error) in eval mode: error rate for classification, RMSE in target units else."""
    outs = predict(model, x, batch)
    if data.task == "regression":
        mse = nn.functional.mse_loss(outs, y).item()
        return mse, math.sqrt(mse) * data.target_std
    loss = nn.functional.cross_entropy(outs, y).item()
    return loss, (outs.argmax(1) != y).double().mean().item()


def _loss(out: Tensor, y: Tensor, data: Dataset) -> Tensor:
    if data.task == "regression":
        return nn.functional.mse_loss(out, y)
    return nn.functional.cross_entropy(out, y)


def _rdrop_strategy(model: nn.Module) -> str:
    """R-Drop's two passes: the doubled batch, or two passes where the batch cannot be
    replicated (a site draws once per batch, or takes time-first sequences; the
    structure is fixed for a run: asked once per epoch, not per step)."""
    return "batch" if batchable(dropout_sites(model)) else "loop"


def _step_loss(run: _Run, x: Tensor, y: Tensor, strategy: str) -> Tensor:
    """The training loss of one batch: the task's, or R-Drop's over two passes."""
    if not run.config.rdrop:
        return _loss(run.net(x), y, run.data)
    a, b = rdrop_forward(run.net, x, strategy=strategy)
    return rdrop_loss(a, b, y, alpha=run.config.rdrop, task=run.data.task)


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed() -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size())


def _mask_agreement(generator: torch.Generator, ctx: _Dist, device: torch.device) -> float:
    """Share of equal bits between rank 0's and rank 1's next dropout masks (0.5 when
    independent, 1.0 when shared), drawn from copies so training is unaffected."""
    probe = torch.Generator(device=generator.device)
    probe.set_state(generator.get_state())
    mask = bernoulli_mask(torch.empty(4096, device=generator.device), 0.5, generator=probe)
    mask = mask.to(device)  # NCCL gathers device tensors only
    gathered = [torch.empty_like(mask) for _ in range(ctx.world)]
    dist.all_gather(gathered, mask)
    return (gathered[0] == gathered[1]).double().mean().item()


def _check_resumable(saved: Any, config: TrainConfig, path: Path) -> None:
    if not isinstance(saved, dict):
        raise UsageError(f"train: {str(path)!r} records no configuration; start afresh in "
                         "another folder")
    current = asdict(config)
    for key, value in saved.items():
        if key not in RESUMABLE and current.get(key) != value:
            raise UsageError(
                f"train: cannot `resume` a run made with {key}={value!r} with "
                f"{key}={current.get(key)!r}; resume with the same configuration (only "
                "`epochs` may change)", key)


@dataclass
class _Run:
    """Everything one training run holds between epochs (what a checkpoint saves)."""

    config: TrainConfig
    out: Path
    ctx: _Dist
    data: Dataset
    device: torch.device
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    model: nn.Module
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    opt: torch.optim.Optimizer
    sched: DropoutScheduler | None
    g_drop: torch.Generator  # dropout masks, one stream per rank (backend "torch")
    g_data: torch.Generator  # data order, the same on every rank
    history: list[dict[str, Any]]
    plan: SeedPlan | None = None  # dropout masks from (seed, step) (backend "seeded")
    x_val: Tensor | None = None  # the validation split, carved from the training split
    y_val: Tensor | None = None
    early: EarlyStopping | None = None
    aug: Augment | None = None
    g_aug: torch.Generator | None = None  # augmentation draws, the same on every rank


def _open_run(config: TrainConfig, out: Path, resume: bool, data: Dataset | None,
              log: Callable[[str], None]) -> _Run:
    """Check the request, then build the model, optimiser and streams (resumed if asked)."""
    config.validate()
    ctx = _init_distributed()
    if ctx.main:
        check_writable_dir(out)
    held = [name for name in (CHECKPOINT, METRICS) if (out / name).exists()]
    if held and not resume:
        raise UsageError(
            f"train: `out` {str(out)!r} already holds a run ({', '.join(held)}); set `resume` "
            "to continue it or choose another folder", "out")
    data = data if data is not None else dataset_for(config)
    check_fits(config, data)
    if ctx.main:
        check_manifest(out, "train", asdict(config), RESUMABLE)
    device = torch.device(f"cuda:{ctx.rank % torch.cuda.device_count()}"
                          if torch.cuda.is_available() else "cpu")
    size = config.train_size if config.train_size is not None else len(data.x_train)
    train_idx, val_idx = validation_split(size, config.val_fraction)
    torch.manual_seed(config.seed)  # initial weights
    g_drop = torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + 7 + ctx.rank)
    model = build_model(config, data, g_drop).to(device)
    run = _Run(
        config, out, ctx, data, device,
        data.x_train[train_idx].to(device), data.y_train[train_idx].to(device),
        data.x_test.to(device), data.y_test.to(device),
        model, model, torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum),
        DropoutScheduler(model, schedules.parse_schedule(config.schedule))
        if config.schedule else None,
        g_drop, torch.Generator().manual_seed(config.seed), [],
        SeedPlan(model, config.seed) if config.backend == "seeded" else None,
        data.x_train[val_idx].to(device) if len(val_idx) else None,
        data.y_train[val_idx].to(device) if len(val_idx) else None,
        EarlyStopping(config.early_stopping, config.min_delta)
        if config.early_stopping is not None else None,
        parse_augment(config.augment) if config.augment else None,
        torch.Generator().manual_seed(config.seed * 7_919 + 3) if config.augment else None,
    )
    if resume and (out / CHECKPOINT).exists():
        _restore(run, log)
    elif resume and ctx.main:
        log(f"no checkpoint in {out}: starting a new run")
    if ctx.main:
        atomic_write_text(out / "config.json", json.dumps(asdict(config), indent=2) + "\n")
    if ctx.world > 1:
        run.net = nn.parallel.DistributedDataParallel(model)
        probe = next(iter(run.plan.generators.values())) if run.plan is not None else g_drop
        agreement = _mask_agreement(probe, ctx, device)
        if ctx.main:
            atomic_write_text(out / "ddp.json", json.dumps(
                {"world_size": ctx.world, "backend": dist.get_backend(),
                 "mask_agreement_rank0_rank1": agreement}, indent=2) + "\n")
    return run


# Bytes per parameter while training: weights, gradients, SGD momentum, and the serialized
# copy a checkpoint holds while it is written.
TRAINING_COPIES = 4


def check_fits(config: TrainConfig, data: Dataset) -> None:
    """What only the data set and the machine can tell: enough training examples, a
    model for its task, and memory to train it (its size counted on the meta device)."""
    if config.train_size is not None and config.train_size > len(data.x_train):
        raise UsageError(f"train: expected `train_size` <= {len(data.x_train)} (the training "
                         f"examples of {config.dataset}), got train_size={config.train_size}",
                         "train_size")
    size = config.train_size or len(data.x_train)
    if config.val_fraction and len(validation_split(size, config.val_fraction)[1]) == 0:
        raise UsageError(f"train: `val_fraction` {config.val_fraction} of {size} training "
                         "examples leaves no validation example; use more examples or a larger "
                         "fraction", "val_fraction")
    if data.task != "classification" and config.model != "mlp":
        raise UsageError(f"train: {config.dataset!r} is a regression set, which trains a "
                         f"regression MLP; expected `model` 'mlp', got {config.model!r}", "model")
    if config.augment and data.image_shape is None:
        raise UsageError(f"train: `augment` moves images, and data set {config.dataset!r} has "
                         "none", "augment")
    with torch.device("meta"):  # shapes only: nothing allocated
        size = sum(p.numel() for p in build_model(config, data, torch.Generator()).parameters())
    check_fits_memory("train", size * FLOAT_BYTES * TRAINING_COPIES,
                      f"training a {config.model} of {size:,} parameters", "hidden")


def check_samples(config: TrainConfig, data: Dataset, command: str,
                  rates: tuple[str, ...] = ("dropout", "input_dropout")) -> None:
    """Monte Carlo dropout needs a network that samples: a configuration whose ``rates``
    leave no dropout (observed on the untrained network) is refused before training,
    where :func:`~dropkit.mc_predict` could refuse only after it."""
    model = build_model(config, data, torch.Generator())
    if any(s.draws for s in dropout_sites(model, data.x_train[:2])):
        return
    asked = ", ".join(f"{r}={getattr(config, r):g}" for r in rates)
    wanted = " or ".join(f"`{r}`" for r in rates)
    raise UsageError(f"{command}: Monte Carlo dropout samples nothing in a network without "
                     f"dropout; expected {wanted} > 0, got {asked}", rates[0])


def validation_split(size: int, fraction: float) -> tuple[Tensor, Tensor]:
    """Indices of the first ``size`` training examples for training and for validation:
    ``round(fraction * size)`` of them, drawn with a fixed seed, so every run and seed of
    a data set validates on the same examples (and the test split is never touched)."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
    n_val = round(fraction * size)
    return order[n_val:].sort().values, order[:n_val].sort().values


def _restore(run: _Run, log: Callable[[str], None]) -> None:
    """Continue from the checkpoint: weights, optimiser, schedule, every random stream."""
    path = run.out / CHECKPOINT
    state = load_checked(path, map_location=run.device)
    _check_resumable(state.get("config"), run.config, path)
    if (run.out / BEST).exists():  # checked now, not after the epochs it would end
        load_weights(run.model, load_checked(run.out / BEST, run.device).get("model"),
                     run.out / BEST)
    try:
        _load_state(run, state)
    except UsageError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
        raise UsageError(f"train: {str(path)!r} does not fit this run "
                         f"({first_sentence(error)}); start afresh in another folder") from None
    if len(run.history) > run.config.epochs:
        raise UsageError(f"train: the run in {str(run.out)!r} has done {len(run.history)} "
                         f"epochs; resume with `epochs` >= {len(run.history)}, got "
                         f"epochs={run.config.epochs}", "epochs")
    if run.ctx.main:
        _repair_metrics(run, log)
        log(f"resuming {run.out} after epoch {len(run.history)}")


def _load_state(run: _Run, state: dict[str, Any]) -> None:
    """Weights, optimiser, schedule, every random stream and the history, from ``state``."""
    load_weights(run.model, state["model"], run.out / CHECKPOINT)
    run.opt.load_state_dict(state["optimizer"])
    if run.sched is not None:
        run.sched.load_state_dict(state["scheduler"])
    saved = state["rng"]["dropout"]  # one state per rank of the run that saved it
    if run.ctx.rank < len(saved):
        run.g_drop.set_state(saved[run.ctx.rank].cpu())
    if run.plan is not None:  # every rank's masks follow from (seed, step)
        run.plan.load_state_dict(state["seed_plan"])
    run.g_data.set_state(state["rng"]["data"].cpu())
    if run.g_aug is not None:
        run.g_aug.set_state(state["rng"]["augment"].cpu())
    if run.early is not None:
        run.early = EarlyStopping.from_state(state["early_stopping"])
    torch.set_rng_state(state["rng"]["torch"].cpu())
    run.history = [dict(r) for r in state["history"]]


def load_weights(model: nn.Module, weights: Any, path: Path) -> None:
    """``model.load_state_dict(weights)``, read from the file ``path``: weights of another
    shape or with other keys, or a non-finite one, are a
    :class:`~dropkit.errors.UsageError` naming it."""
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise UsageError(f"{str(path)!r} holds weights that do not fit this model "
                         f"({first_sentence(error)}); start afresh in another folder") from None
    bad = [name for name, t in model.state_dict().items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise UsageError(f"{str(path)!r} holds non-finite weights ({', '.join(bad[:3])}): "
                         "the run diverged; start afresh in another folder with a smaller "
                         "`lr`", "lr")


def _repair_metrics(run: _Run, log: Callable[[str], None]) -> None:
    """The metrics as the checkpoint holds them: a kill between the checkpoint's rename
    and the metrics' left the file an epoch short, and it would stay so."""
    lines = "".join(json.dumps(r) + "\n" for r in run.history)
    path = run.out / METRICS
    held = path.read_bytes() if path.exists() else None  # bytes: a damaged file too
    if held != lines.encode("utf-8"):
        atomic_write_text(path, lines)
        kept = held.count(b"\n") if held is not None else 0
        log(f"{METRICS} repaired from the checkpoint: it held {kept} of "
            f"{len(run.history)} epochs")


def _epoch(run: _Run, epoch: int) -> dict[str, Any]:
    """One pass over this rank's share of the shuffled training set, then its metrics."""
    start = time.perf_counter()
    ctx, config = run.ctx, run.config
    run.net.train()
    per_rank = max(1, config.batch_size // ctx.world)
    order = torch.randperm(len(run.x_train), generator=run.g_data)[ctx.rank :: ctx.world]
    order = order.to(run.device)
    total, count = 0.0, 0
    strategy = _rdrop_strategy(run.model) if config.rdrop else ""
    for i in range(0, len(order), per_rank):
        idx = order[i : i + per_rank]
        x = run.x_train[idx]
        if run.aug is not None and run.g_aug is not None:
            assert run.data.image_shape is not None
            x = augment(x, run.data.image_shape, run.aug, run.g_aug)
        loss = _step_loss(run, x, run.y_train[idx], strategy)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        if run.plan is not None:
            run.plan.step()
        total += loss.item() * len(idx)
        count += len(idx)
    rates = {s.name: s.rate for s in dropout_sites(run.model)}  # the rates this epoch used
    if run.sched is not None:
        run.sched.step()
    record: dict[str, Any] = {"epoch": epoch, "train_loss": total / max(count, 1)}
    if run.x_val is not None and run.y_val is not None:
        # every rank computes it (the weights are the same), so all stop together
        record["val_loss"], record["val_error"] = evaluate(run.model, run.x_val, run.y_val,
                                                           run.data)
    if ctx.main and (epoch % config.eval_every == 0 or epoch == config.epochs):
        record["eval_train_loss"], record["train_error"] = evaluate(
            run.model, run.x_train, run.y_train, run.data)
        record["test_loss"], record["test_error"] = evaluate(
            run.model, run.x_test, run.y_test, run.data)
    record["rates"] = rates
    record["seconds"] = time.perf_counter() - start
    return record


def train(
    config: TrainConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: bool = True,
    data: Dataset | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train one configuration into folder ``out``; return the per-epoch metrics.

    ``out`` holds ``config.json``, ``metrics.jsonl`` and ``checkpoint.pt``, written
    atomically after every epoch. Without ``resume``, a folder that already holds a run is
    an error (nothing is overwritten); with it, the run continues exactly where it stopped.
    """
    run = _open_run(config, Path(out), resume, data, log)
    bar = None
    if progress and run.ctx.main:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, initial=len(run.history),
                   desc=run.out.name or "train", unit="epoch", leave=False)
    for epoch in range(len(run.history) + 1, config.epochs + 1):
        if run.early is not None and run.early.stopped:
            break  # a resumed run that had already stopped
        record = _epoch(run, epoch)
        if run.early is not None:
            record["stopped"] = run.early.update(epoch, record["val_loss"])
            record["best_epoch"] = run.early.best_epoch
            if run.early.improved_at(epoch) and run.ctx.main:
                save_checked(run.out / BEST, {"model": run.model.state_dict()})
        run.history.append(record)
        _save(run)
        if bar is not None:
            bar.update(1)
            if "test_error" in record:
                bar.set_postfix(train_err=f"{record['train_error']:.4f}",
                                test_err=f"{record['test_error']:.4f}")
        if record.get("stopped"):
            break
    if bar is not None:
        bar.close()
    if run.ctx.world > 1:
        dist.barrier()
    if run.early is not None and (run.out / BEST).exists():
        # the best epoch's weights, as load_final gives them
        best = load_checked(run.out / BEST, map_location=run.device)
        load_weights(run.model, best.get("model"), run.out / BEST)
    return run.history


def load_final(config: TrainConfig, data: Dataset, out: str | os.PathLike[str],
               generator: torch.Generator | None = None) -> nn.Module:
    """The trained network of the run in ``out``, from its checkpoint (with early stopping:
    the best epoch's weights); its dropout layers draw from ``generator`` (default: one
    seeded with ``config.seed``)."""
    path = Path(out) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"load_final: expected a checkpoint at {path}, found none")
    if generator is None:
        generator = torch.Generator().manual_seed(config.seed)
    model = build_model(config, data, generator)
    best = Path(out) / BEST
    if config.early_stopping is not None and best.exists():
        path = best
    load_weights(model, load_checked(path).get("model"), path)
    return model


def dataset_for(config: TrainConfig) -> Dataset:
    """The data set a configuration names (files from its ``data_root``)."""
    return load_dataset(config.dataset, root=config.data_root, download=config.download)


def prepare(config: TrainConfig, out: str | os.PathLike[str], data: Dataset | None = None
            ) -> tuple[Path, Dataset]:
    """The preamble of every experiment: a valid configuration, a writable output folder
    and the data, each checked (:func:`check_fits`) before any training starts."""
    config.validate()
    folder = check_writable_dir(out)
    data = data if data is not None else dataset_for(config)
    check_fits(config, data)
    return folder, data


@dataclass(frozen=True)
class RunOptions:
    """What every experiments command takes (``compare``, ``sweep``, ``uncertainty``): one
    definition instead of the same keywords in each signature.

    ``epochs`` and ``out`` left at None take the command's own defaults.
    """

    dataset: str = "mnist5k"
    model: str = "mlp"
    epochs: int | None = None
    out: str | os.PathLike[str] | None = None
    progress: bool = True  # progress bars
    log: Callable[[str], None] = print  # where the command's lines go
    data: Dataset | None = None  # an already loaded data set (reproductions share theirs)
    overrides: dict[str, Any] = field(default_factory=dict)  # other TrainConfig fields

    def config(self, epochs: int, **fields: Any) -> TrainConfig:
        """The command's configuration: its default ``epochs`` filled in, ``fields`` over
        the overrides (not yet validated)."""
        return TrainConfig(dataset=self.dataset, model=self.model,
                           epochs=self.epochs if self.epochs is not None else epochs,
                           **{**self.overrides, **fields})

    def folder(self, default: str) -> str | os.PathLike[str]:
        """The command's output folder: ``out``, or the command's ``default``."""
        return self.out if self.out is not None else default

    def prepare(self, epochs: int, out: str, **fields: Any) -> tuple[TrainConfig, Path, Dataset]:
        """The command's configuration (:meth:`config`), its checked output folder and
        its data: :func:`prepare`."""
        config = self.config(epochs, **fields)
        folder, data = prepare(config, self.folder(out), self.data)
        return config, folder, data


def train_seeds(
    configs: dict[str, TrainConfig],
    seeds: int,
    out: Path,
    *,
    data: Dataset,
    progress: bool = False,
    log: Callable[[str], None] = lambda _: None,
    on_run: Callable[[str, int, list[dict[str, Any]]], None] | None = None,
) -> dict[str, list[list[dict[str, Any]]]]:
    """Train each named configuration under seeds 0..seeds-1, each in its own resumable
    folder ``out/runs/<name>-seed<k>``; return the histories, cut at ``epochs``."""
    histories: dict[str, list[list[dict[str, Any]]]] = {}
    for name, config in configs.items():
        histories[name] = []
        for seed in range(seeds):
            run = TrainConfig(**{**asdict(config), "seed": seed})
            h = train(run, out / "runs" / f"{name}-seed{seed}", resume=True, progress=progress,
                      data=data, log=log)[: config.epochs]
            histories[name].append(h)
            if on_run is not None:
                on_run(name, seed, h)
    return histories


def _save(run: _Run) -> None:
    """Checkpoint then metrics, each atomic; under torchrun rank 0 writes both."""
    drop_states = [run.g_drop.get_state()]
    if run.ctx.world > 1:
        # NCCL gathers device tensors only; generator states are CPU bytes
        mine = run.g_drop.get_state().to(run.device)
        gathered = [torch.empty_like(mine) for _ in range(run.ctx.world)]
        dist.all_gather(gathered, mine)
        drop_states = [s.cpu() for s in gathered]
    if not run.ctx.main:
        return
    save_checked(run.out / CHECKPOINT, {
        "config": asdict(run.config),
        "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict() if run.sched is not None else None,
        "rng": {"dropout": drop_states, "data": run.g_data.get_state(),
                "torch": torch.get_rng_state(),
                **({"augment": run.g_aug.get_state()} if run.g_aug is not None else {})},
        "early_stopping": run.early.state_dict() if run.early is not None else None,
        "seed_plan": run.plan.state_dict() if run.plan is not None else None,
        "history": run.history,
    })
    atomic_write_text(run.out / METRICS, "".join(json.dumps(r) + "\n" for r in run.history))
