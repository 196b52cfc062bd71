"""The README's Python examples run as written, so the front page cannot drift from the API.

Each block runs in a fresh namespace holding what its prose assumes (an input ``x``, a
``model``, labels ``y``); the blocks are found by their first line, so a new or removed
example fails here until this file says what it needs.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

import dropkit
import dropkit.nn as dn

README = Path(__file__).parent.parent / "README.md"


def _blocks() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return {block.splitlines()[0]: block for block in blocks}


def _head_model() -> torch.nn.Module:
    head = torch.nn.Sequential(OrderedDict(drop=dn.Dropout(0.5), fc=torch.nn.Linear(32, 10)))
    return torch.nn.Sequential(OrderedDict(
        body=torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.BatchNorm1d(32),
                                 torch.nn.ReLU()),
        head=head))


def _lightning_context() -> dict[str, object]:
    import lightning.pytorch as L

    class Net(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(784, 10), dn.Dropout(0.5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: list, idx: int) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.TensorDataset(torch.randn(16, 784), torch.randint(0, 10, (16,)))
    loader = torch.utils.data.DataLoader(data, batch_size=8)

    class Quiet:  # the README's Trainer calls, on a tiny run without logs
        def Trainer(self, **kwargs: object) -> L.Trainer:  # noqa: N802 - as L.Trainer
            kwargs["max_epochs"] = min(2, int(kwargs.get("max_epochs", 1)))  # type: ignore[call-overload]
            return L.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu",
                             enable_progress_bar=False, enable_model_summary=False, **kwargs)

    return {"L": Quiet(), "model": Net(), "train_loader": loader, "loader": loader}


def _trainer_context(tmp: Path) -> dict[str, object]:
    import transformers

    from foreign import bert, text_batch

    batch = text_batch()
    data = [{"input_ids": batch["input_ids"][i], "attention_mask": batch["attention_mask"][i],
             "labels": torch.tensor(i % 3)} for i in range(len(batch["input_ids"]))]
    args = transformers.TrainingArguments(output_dir=str(tmp), num_train_epochs=3,
                                          report_to=[], use_cpu=True, disable_tqdm=True,
                                          save_strategy="no", per_device_train_batch_size=4)
    return {"Trainer": transformers.Trainer, "model": bert(), "args": args, "data": data,
            "test_set": data}


def _context(first_line: str, tmp: Path) -> dict[str, object]:
    torch.manual_seed(0)
    x = torch.randn(8, 784)
    if first_line.startswith("import torch"):  # the API tour: self-contained
        return {}
    if first_line.startswith("from dropkit import seeded"):
        return {"dropkit": dropkit, "x": torch.randn(4, 64), "bias": torch.randn(64),
                "residual": torch.randn(4, 64)}
    if first_line.startswith("probs = dropkit.mc_predict"):
        model = torch.nn.Sequential(torch.nn.Linear(784, 10), dn.Dropout(0.5))
        return {"dropkit": dropkit, "model": model, "x": x, "y": torch.randint(0, 10, (8,))}
    if first_line.startswith("from torch.utils.checkpoint import"):
        model = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(), dn.Dropout(0.5),
                                    torch.nn.Linear(32, 10))
        batches = [(x, torch.randint(0, 10, (8,))) for _ in range(2)]
        return {"dropkit": dropkit, "torch": torch, "model": model, "batches": batches,
                "opt": torch.optim.SGD(model.parameters(), lr=0.1), "path": tmp / "run.pt"}
    if first_line.startswith("from dropkit import acquisition"):
        model = torch.nn.Sequential(torch.nn.Linear(784, 10), dn.Dropout(0.5))
        pool = torch.randn(40, 784)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(pool), batch_size=16)
        return {"dropkit": dropkit, "model": model, "pool": pool, "pool_loader": loader}
    if first_line.startswith("from dropkit.nn import LayerDrop"):
        from dropkit.app.models import ResidualBlock

        model = torch.nn.Sequential(torch.nn.Linear(784, 32), dn.Dropout(0.5),
                                    torch.nn.Linear(32, 10)).train()
        return {"dropkit": dropkit, "model": model, "x": x, "y": torch.randint(0, 10, (8,)),
                "block": lambda: ResidualBlock(32, 0.1)}
    if first_line.startswith("from dropkit.integrations.lightning import"):
        return _lightning_context()
    if first_line.startswith("from dropkit.integrations.transformers import"):
        return _trainer_context(tmp)
    if first_line.startswith("from transformers import"):
        return {"dropkit": dropkit, "torch": torch}
    if first_line.startswith("from dropkit import uncertainty as U"):
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(30, 64, 10, generator=g)
        return {"samples": logits.softmax(-1), "y": torch.randint(0, 10, (64,), generator=g),
                "samples_ood": (torch.randn(30, 32, 10, generator=g) * 0.3).softmax(-1),
                "val_logits": logits[0] * 3, "val_y": logits[0].argmax(-1)}
    if first_line.startswith("program = dropkit.export_mc"):
        model = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(), dn.Dropout(0.5),
                                    torch.nn.Linear(32, 10)).eval()
        return {"dropkit": dropkit, "model": model, "x": x}
    if first_line.startswith("dropkit.find_dropout"):
        model = _head_model()

        def evaluate(m: torch.nn.Module) -> torch.Tensor:
            m.eval()
            return m(x)

        return {"dropkit": dropkit, "model": model, "x": x, "example_batch": x,
                "evaluate": evaluate}
    raise AssertionError(f"README has a Python example this test does not know: {first_line!r}")


@pytest.mark.parametrize("first_line", list(_blocks()))
def test_readme_example_runs(first_line: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a file an example writes lands in its own folder
    exec(compile(_blocks()[first_line], f"README.md: {first_line}", "exec"),  # noqa: S102
         _context(first_line, tmp_path))


def test_readme_has_exactly_the_two_setup_commands() -> None:
    # the brief: `make demo` sets up and runs the main job, `make test` the tests
    text = README.read_text(encoding="utf-8")
    commands = re.findall(r"^(make \w+)\b", text, flags=re.M)  # lines that start a command
    assert sorted(set(commands)) == ["make demo", "make test"]


def test_the_version_lives_in_one_place() -> None:
    from importlib.metadata import version

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert version("dropkit") == dropkit.__version__  # what the installed metadata says
    changelog = (README.parent / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{dropkit.__version__}]" in changelog
