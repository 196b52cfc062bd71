"""Shared test helpers, and ``--reseed K``: an audit of tests that rest on the global
random stream. Each test then starts from a stream seeded by its own id and K, not from
whatever the tests before it left; a test whose assertion holds only for some streams
(two Monte Carlo samples alike by chance, a tolerance that a fresh batch can miss) fails
for some K. ``pytest -m "not slow" --reseed 1``, then 2, 3, ...
"""

import os
import sys
import zlib

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # tests/variants.py, shared by test files

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reseed", type=int, default=None, metavar="K",
                     help="seed torch's global generator before each test from its id and K")


def pytest_runtest_setup(item: pytest.Item) -> None:
    k = item.config.getoption("--reseed")
    if k is not None:
        torch.manual_seed(zlib.crc32(f"{item.nodeid}:{k}".encode()))


def gen(seed: int = 0) -> torch.Generator:
    """A fresh CPU generator: every random test names its seed."""
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def g() -> torch.Generator:
    return gen(0)


SIGMAS = 5.0  # a correct sampler fails a 5-sigma bound about once in 1.7 million runs


def assert_binomial(count: int, n: int, prob: float, sigmas: float = SIGMAS) -> None:
    """``count`` successes of ``n`` Bernoulli(prob) draws lie within ``sigmas`` std devs."""
    mean = n * prob
    std = (n * prob * (1 - prob)) ** 0.5
    assert abs(count - mean) <= sigmas * std, (
        f"{count} of {n} is {abs(count - mean) / std:.1f} sigma from the expected {mean:.1f}"
    )


def assert_mean(sample: "torch.Tensor", mean: float, std: float, sigmas: float = SIGMAS) -> None:
    """The sample mean of iid draws with known mean and std lies within ``sigmas`` std errors."""
    n = sample.numel()
    err = abs(sample.double().mean().item() - mean)
    bound = sigmas * std / n**0.5
    assert err <= bound, f"sample mean is off by {err:.3g}, bound {bound:.3g} ({sigmas} sigma)"


def torchrun(*args: str, nproc: int = 2, timeout: float = 300) -> str:
    """Run ``python -m torch.distributed.run --standalone`` with ``nproc`` ranks on ``args``
    (a script and its arguments, or ``-m module ...``); its stdout. Fails with the end
    of its stderr; on a timeout the launcher and every worker are killed."""
    import signal
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--standalone", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too, not only the launcher
        raise
    # the workers' own errors come first; the launcher's summary last
    errors = [line for line in stderr.splitlines()
              if any(w in line for w in ("Error", "error:", "terminate", "what()", "Abort"))]
    assert proc.returncode == 0, "\n".join(errors[:40]) + "\n...\n" + stderr[-1500:]
    return stdout
