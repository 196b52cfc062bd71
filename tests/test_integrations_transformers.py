"""The Hugging Face Trainer callback, on a tiny BERT built from a config (no hub)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate")
transformers = pytest.importorskip("transformers")

import dropkit  # noqa: E402
from dropkit import schedules  # noqa: E402
from dropkit.integrations.transformers import DropoutScheduleCallback  # noqa: E402
from foreign import bert  # noqa: E402

pytestmark = pytest.mark.slow  # trains a model: make test runs it

EPOCHS, ROWS, BATCH = 4, 16, 8  # 2 steps per epoch


class Rows(torch.utils.data.Dataset):
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 50, (ROWS, 12), generator=g)
        self.labels = torch.randint(0, 3, (ROWS,), generator=g)

    def __len__(self) -> int:
        return ROWS

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long),
                "labels": self.labels[i]}


class Record(transformers.TrainerCallback):
    """The rates each epoch trained with, read from the model at the epoch's end."""

    def __init__(self) -> None:
        self.epochs: dict[int, dict[str, float]] = {}

    def on_epoch_end(self, args, state, control, model=None, **kwargs) -> None:
        epoch = round(state.epoch) - 1
        self.epochs[epoch] = {s.name: s.rate for s in dropkit.dropout_sites(model)
                              if s.is_probability}


class StopAfter(transformers.TrainerCallback):
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, args, state, control, **kwargs) -> None:
        if round(state.epoch) >= self.epochs:
            control.should_training_stop = True  # a run killed after its checkpoint


def _trainer(out: Path, callbacks: list) -> transformers.Trainer:
    args = transformers.TrainingArguments(
        output_dir=str(out), num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
        save_strategy="epoch", logging_strategy="epoch", report_to=[], use_cpu=True,
        restore_callback_states_from_checkpoint=True, disable_tqdm=True, seed=0,
        learning_rate=1e-3)
    return transformers.Trainer(model=bert(attention=0.5, hidden=0.1), args=args,
                                train_dataset=Rows(), callbacks=callbacks)


def test_rates_follow_the_schedule_and_a_resumed_run_matches(tmp_path: Path) -> None:
    schedule = schedules.linear(0.3, 0.0, 3)
    straight = Record()
    trainer = _trainer(tmp_path / "a", [DropoutScheduleCallback(schedule), straight])
    trainer.train()
    sites = straight.epochs[0].keys()
    assert any("attention" in name for name in sites)  # float attributes and modules alike
    assert straight.epochs == {e: dict.fromkeys(sites, pytest.approx(schedule(e)))
                               for e in range(EPOCHS)}
    logged = [row["dropout/bert.encoder.layer.0.attention.self.dropout"]
              for row in trainer.state.log_history if "loss" in row]
    assert logged == pytest.approx([schedule(e) for e in range(EPOCHS)])

    _trainer(tmp_path / "b", [DropoutScheduleCallback(schedule), Record(), StopAfter(2)]).train()
    checkpoint = max((tmp_path / "b").glob("checkpoint-*"), key=lambda p: p.stat().st_mtime)
    saved = json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"]
    assert saved["DropoutScheduleCallback"] == {
        "args": {"schedule": "linear:0.3,0.0,3", "interval": "epoch", "sites": None,
                 "start": 0},
        "attributes": {"last_step": 1}}
    resumed = Record()
    _trainer(tmp_path / "b", [DropoutScheduleCallback(schedule), resumed]).train(
        resume_from_checkpoint=str(checkpoint))
    assert resumed.epochs == {e: straight.epochs[e] for e in range(2, EPOCHS)}


def test_a_plain_callable_is_refused_since_the_trainer_stores_text() -> None:
    with pytest.raises(TypeError, match="expected `schedule` to be a spec such as"):
        DropoutScheduleCallback(lambda step: 0.1)


def test_step_interval_and_named_sites(tmp_path: Path) -> None:
    name = "bert.encoder.layer.0.attention.self.dropout"
    seen: dict[int, float] = {}

    class Steps(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs) -> None:
            rates = {s.name: s.rate for s in dropkit.dropout_sites(model)}
            seen[state.global_step - 1] = rates[name]
            assert rates["bert.encoder.layer.1.attention.self.dropout"] == 0.5  # not scheduled

    callback = DropoutScheduleCallback({name: "linear:0.4,0.0,4"}, interval="step")
    _trainer(tmp_path, [callback, Steps()]).train()
    assert [seen[s] for s in range(8)] == pytest.approx([0.4, 0.3, 0.2, 0.1, 0, 0, 0, 0])


class TestMCDropoutTrainer:
    """The Trainer's predict and evaluate put the model in eval; the MC prediction step
    samples all the same, and leaves the model as it was."""

    T = 6

    def _trainer(self, out: Path, **mc) -> transformers.Trainer:
        from dropkit.integrations.transformers import MCDropoutTrainer

        args = transformers.TrainingArguments(output_dir=str(out), report_to=[], use_cpu=True,
                                              per_device_eval_batch_size=BATCH,
                                              disable_tqdm=True)
        return MCDropoutTrainer(model=bert(attention=0.3, hidden=0.3), args=args,
                                mc_samples=self.T, **mc)

    def test_predict_returns_t_samples_per_example(self, tmp_path: Path) -> None:
        trainer = self._trainer(tmp_path)
        model = trainer.model
        state = {k: v.clone() for k, v in model.state_dict().items()}
        out = trainer.predict(Rows())
        samples = torch.as_tensor(out.predictions)
        assert samples.shape == (ROWS, self.T, 3)  # both batches, T samples each
        for row in samples:  # every example's samples differ: dropout sampled
            assert len({tuple(s.tolist()) for s in row}) == self.T
        assert not any(m.training for m in model.modules())
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
        # the loss is the NLL of the MC predictive, from the same samples
        probs = samples.softmax(-1).mean(1)
        labels = torch.as_tensor(out.label_ids)
        nll = -probs[torch.arange(ROWS), labels].log().mean()
        assert out.metrics["test_loss"] == pytest.approx(nll.item(), rel=1e-5)

    def test_summary_and_evaluate(self, tmp_path: Path) -> None:
        trainer = self._trainer(tmp_path, mc_summary=True)
        probs = torch.as_tensor(trainer.predict(Rows()).predictions)
        assert probs.shape == (ROWS, 3)
        torch.testing.assert_close(probs.sum(-1), torch.ones(ROWS))
        assert "eval_loss" in trainer.evaluate(Rows())

    @pytest.mark.parametrize("kwargs, message", [
        ({"mc_samples": 1}, r"expected `mc_samples` to be an int >= 2, got mc_samples=1"),
        ({"mc_strategy": "fast"}, r"expected `mc_strategy` to be one of"),
        ({"mc_summary": 1}, r"expected `mc_summary` to be a bool, got int")])
    def test_bad_arguments_are_named(self, tmp_path: Path, kwargs, message) -> None:
        from dropkit.integrations.transformers import MCDropoutTrainer

        args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[],
                                              use_cpu=True)
        with pytest.raises((ValueError, TypeError), match="^MCDropoutTrainer: " + message):
            MCDropoutTrainer(model=bert(), args=args, **kwargs)


def test_falcon_s_stored_rates_are_named_and_never_logged(tmp_path: Path) -> None:
    """Falcon's layers store ``hidden_dropout`` and read the config's: the callback's
    first step names them (set_rate's check at the model's next call), and the logs
    carry only rates the forward uses."""
    from foreign import falcon

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=BATCH,
        logging_strategy="epoch", save_strategy="no", report_to=[], use_cpu=True,
        disable_tqdm=True)
    model = falcon(p=0.3)
    model.config.pad_token_id = 1
    data = [{"input_ids": r["input_ids"], "attention_mask": r["attention_mask"],
             "labels": r["input_ids"]} for r in (Rows()[i] for i in range(ROWS))]
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data,
                                   callbacks=[DropoutScheduleCallback("constant:0.2")])
    with pytest.warns(RuntimeWarning, match=r"'transformer.h.0.hidden_dropout'.* were set, "
                                            r"but .* unread"):
        trainer.train()
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert not any(k.endswith("hidden_dropout") for k in logged)
    assert not any(k.endswith("attention_dropout") for k in logged)  # SDPA never reads it
