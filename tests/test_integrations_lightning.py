"""The Lightning callbacks, on tiny models fit on the CPU."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

L = pytest.importorskip("lightning.pytorch")

import dropkit  # noqa: E402
import dropkit.nn as dn  # noqa: E402
from dropkit import schedules  # noqa: E402
from dropkit.integrations.lightning import DropoutSchedule, MCDropoutPrediction  # noqa: E402

pytestmark = pytest.mark.slow  # fits models: make test runs it


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.drop = dn.Dropout(0.5)
        self.attn_like = nn.Dropout(0.5)  # torch's own: every site kind is scheduled
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn_like(self.drop(self.body(x))))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], idx: int) -> torch.Tensor:
        return self(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g))
    return DataLoader(data, batch_size=16)


class Record(L.Callback):
    """The rates each epoch's (or step's) training ran with, read from the model."""

    def __init__(self) -> None:
        self.epochs: dict[int, dict[str, float]] = {}
        self.steps: dict[int, dict[str, float]] = {}

    def on_train_batch_start(self, trainer, module, batch, idx) -> None:
        rates = {s.name: s.rate for s in dropkit.dropout_sites(module)}
        self.epochs.setdefault(trainer.current_epoch, rates)
        self.steps[trainer.global_step] = rates


def _trainer(tmp: Path, epochs: int, callbacks: list, **kwargs) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, callbacks=callbacks, default_root_dir=tmp,
                     accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                     logger=L.loggers.CSVLogger(tmp, name="logs"), log_every_n_steps=1,
                     **kwargs)


def test_rates_follow_the_schedule_epoch_by_epoch_and_are_logged(tmp_path: Path) -> None:
    schedule = schedules.linear(0.5, 0.1, 4)
    record = Record()
    _trainer(tmp_path, 4, [DropoutSchedule(schedule), record]).fit(Net(), _loader())
    assert record.epochs == {e: {"drop": pytest.approx(schedule(e)),
                                 "attn_like": pytest.approx(schedule(e))} for e in range(4)}
    rows = list(csv.DictReader(next(tmp_path.glob("logs/*/metrics.csv")).open()))
    logged = [float(r["dropout/drop"]) for r in rows if r.get("dropout/drop")]
    assert logged == pytest.approx([schedule(e) for e in range(4)])


def test_a_resumed_fit_follows_the_schedule_of_an_uninterrupted_one(tmp_path: Path) -> None:
    schedule = "early-linear:0.6,5"
    straight = Record()
    _trainer(tmp_path / "a", 5, [DropoutSchedule(schedule), straight]).fit(Net(), _loader())

    first = _trainer(tmp_path / "b", 2, [DropoutSchedule(schedule), Record()])
    first.fit(Net(), _loader())
    ckpt = next((tmp_path / "b").rglob("*.ckpt"))
    state = torch.load(ckpt, weights_only=False)["callbacks"]
    assert state["DropoutSchedule{'interval': 'epoch', 'sites': None}"] == {"last_step": 1}
    resumed = Record()
    _trainer(tmp_path / "b", 5, [DropoutSchedule(schedule), resumed]).fit(
        Net(), _loader(), ckpt_path=ckpt)
    assert sorted(resumed.epochs) == [2, 3, 4]
    assert resumed.epochs == {e: straight.epochs[e] for e in (2, 3, 4)}


def test_step_interval_with_a_fractional_start_and_named_sites(tmp_path: Path) -> None:
    record = Record()
    callback = DropoutSchedule(schedules.linear(0.4, 0.0, 4), interval="step", start=0.25,
                               sites=["drop"])
    _trainer(tmp_path, 2, [callback, record]).fit(Net(), _loader())  # 8 steps; start at 2
    expected = [0.4, 0.4, 0.4, 0.3, 0.2, 0.1, 0.0, 0.0]
    assert [record.steps[s]["drop"] for s in range(8)] == pytest.approx(expected)
    assert all(record.steps[s]["attn_like"] == 0.5 for s in range(8))  # not scheduled


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"schedule": "wobble:1"}, ValueError, "DropoutSchedule: parse_schedule: expected"),
    ({"schedule": 0.5}, TypeError, "expected `schedule` to be a spec, a schedule or a "
                                   "callable step -> p, got float"),
    ({"schedule": "early:0.1,3", "interval": "batch"}, ValueError,
     "expected `interval` to be 'epoch' or 'step', got interval='batch'"),
    ({"schedule": "early:0.1,3", "start": 1.5}, ValueError,
     r"expected `start` to be an int >= 0 \(in epochs\) or a float in \[0, 1\)"),
    ({"schedule": "early:0.1,3", "start": True}, ValueError, "got start=True"),
    ({"schedule": "early:0.1,3", "sites": "drop"}, TypeError, "list of site names"),
    ({"schedule": {"drop": "early:0.1,3"}, "sites": ["drop"]}, ValueError, "one or the other"),
])
def test_bad_arguments_fail_in_init(kwargs: dict, error: type, match: str) -> None:
    schedule = kwargs.pop("schedule")
    with pytest.raises(error, match=match):
        DropoutSchedule(schedule, **kwargs)


def test_unknown_site_names_fail_at_setup(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\['nope'\] are not dropout sites"):
        _trainer(tmp_path, 1, [DropoutSchedule("early:0.1,3", sites=["nope"])]).fit(
            Net(), _loader())


def test_mc_prediction_samples_through_the_eval_switch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = Net()
    _trainer(tmp_path, 1, []).fit(net, _loader())
    bn = {k: v.clone() for k, v in net.body[1].state_dict().items()}
    trainer = _trainer(tmp_path, 1, [MCDropoutPrediction(samples=8)])
    out = trainer.predict(net, _loader())
    assert [tuple(o.shape) for o in out] == [(8, 16, 3)] * 4
    assert all(not torch.equal(o[0], o[1]) for o in out)  # the samples differ
    assert all(torch.equal(v, net.body[1].state_dict()[k]) for k, v in bn.items())
    assert "predict_step" not in net.__dict__  # the class's own is back
    plain = _trainer(tmp_path, 1, []).predict(net, _loader())
    again = _trainer(tmp_path, 1, []).predict(net, _loader())
    assert all(torch.equal(a, b) for a, b in zip(plain, again, strict=True))  # eval: fixed
    # and the samples' mean is near the eval output (the weight-scaling rule), not equal
    assert not torch.equal(out[0].mean(0), plain[0])


def test_mc_prediction_summary(tmp_path: Path) -> None:
    out = _trainer(tmp_path, 1, [MCDropoutPrediction(samples=6, summary=True)]).predict(
        Net(), _loader())
    first = out[0]
    assert set(first) == {"probs", "predictive_entropy", "mutual_information"}
    assert first["probs"].shape == (16, 3) and first["mutual_information"].shape == (16,)
    assert torch.allclose(first["probs"].sum(-1), torch.ones(16))
    assert (first["mutual_information"] >= -1e-6).all()


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"samples": 1}, ValueError, r"expected `samples` to be an int >= 2, got samples=1"),
    ({"strategy": "fast"}, ValueError, "expected `strategy` to be one of"),
    ({"input": 3}, TypeError, "expected `input` to be a callable"),
    ({"summary": "yes"}, TypeError, "expected `summary` to be a bool"),
])
def test_mc_prediction_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        MCDropoutPrediction(**kwargs)


class Stored(Net):
    """Falcon's pattern: ``hidden_dropout`` stored, the forward reading another value."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden_dropout = 0.1  # a rate attribute by name, never read
        self.config_rate = 0.2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.dropout(self.body(x), self.config_rate, self.training)
        return self.head(self.attn_like(self.drop(h)))


def test_a_stored_rate_the_forward_ignores_is_neither_set_nor_logged(tmp_path: Path) -> None:
    model = Stored()
    assert "hidden_dropout" in dict(dropkit.find_dropout(model))  # no pass has looked yet
    # set at setup, before any batch showed the forward: named once a pass has looked
    with pytest.warns(RuntimeWarning, match=r"\['hidden_dropout'\] were set, but .* unread"):
        _trainer(tmp_path, 2, [DropoutSchedule(schedules.constant(0.3))]).fit(model, _loader())
    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        logged = {k for row in csv.DictReader(f) for k, v in row.items() if v}
    assert {"dropout/drop", "dropout/attn_like"} <= logged
    assert "dropout/hidden_dropout" not in logged
    assert model.drop.p == 0.3 and model.config_rate == 0.2
    assert "hidden_dropout" not in dict(dropkit.find_dropout(model))


def test_a_schedule_naming_an_ignored_rate_fails_at_the_first_batch(tmp_path: Path) -> None:
    cb = DropoutSchedule({"hidden_dropout": schedules.constant(0.3)})
    with pytest.raises(ValueError, match=r"DropoutSchedule: `schedule` names "
                                         r"\['hidden_dropout'\], which the model's forward "
                                         r"does not read"):
        _trainer(tmp_path, 1, [cb]).fit(Stored(), _loader())
