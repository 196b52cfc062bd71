import json
import math

import pytest

from conftest import torchrun

pytestmark = pytest.mark.slow  # trains models or runs subprocesses: make test runs it


@pytest.mark.parametrize("backend", ["torch", "seeded"])
def test_two_process_ddp_on_cpu(tmp_path, backend: str) -> None:
    out = tmp_path / "ddp"
    stdout = torchrun("-m", "dropkit", "train", "--epochs", "2", "--train-size", "400",
                      "--hidden", "32", "--batch-size", "50", "--no-progress", "--out", str(out),
                      "--backend", backend)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    ddp = json.loads((out / "ddp.json").read_text())
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    # Independent p = 0.5 masks of 4096 bits agree on half of them (sd 0.0078); shared
    # masks would agree on all. 5 sigma above one half:
    assert ddp["mask_agreement_rank0_rank1"] <= 0.5 + 5 * math.sqrt(0.25 / 4096)
    assert (out / "checkpoint.pt").exists() and (out / "curves.png").exists()
    assert stdout.count("results in") == 1  # only rank 0 reports
