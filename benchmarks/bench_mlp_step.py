"""Cost of dropkit's dropout against torch's, as ratios measured in one run.

Run::

    .venv/bin/python benchmarks/bench_mlp_step.py            # full
    .venv/bin/python benchmarks/bench_mlp_step.py --quick    # a smoke run

1. A training step (forward, cross-entropy, backward, SGD) of the lesson's MLP,
   784-1024-1024-10 with input dropout 0.2 and hidden dropout 0.5, batch 128: once with
   ``torch.nn.Dropout``, once with ``dropkit.nn.Dropout``, same weights and data.
2. The dropout op alone, forward and forward+backward, on 2^22 float32 elements.
3. The same for ``dropkit.seeded.dropout`` on the CPU: the vectorized torch Philox, whose
   mask is a function of (seed, offset) and equals the GPU kernels' bit for bit.

The variants run interleaved, in alternating order, and each reports the median of its
rounds, so drift of the machine hits both alike. The ratio is dropkit / torch: 1.00 is
parity, below 1 is faster.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import dropkit
import dropkit.functional as DF
import dropkit.nn as dn
from dropkit import seeded


def mlp(dropout: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(
        dropout(0.2), nn.Linear(784, 1024), nn.ReLU(), dropout(0.5),
        nn.Linear(1024, 1024), nn.ReLU(), dropout(0.5), nn.Linear(1024, 10),
    )


def step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, reps: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating order."""
    for fn in fns.values():  # warm-up
        for _ in range(max(2, reps // 2)):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            for _ in range(reps):
                fns[name]()
            times[name].append((time.perf_counter() - start) / reps)
    return {name: statistics.median(t) for name, t in times.items()}


def machine() -> str:
    """The line every benchmark prints first: versions, processor, threads, date."""
    return (f"dropkit {dropkit.__version__}, torch {torch.__version__}, "
            f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
            f"{datetime.date.today().isoformat()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    args = parser.parse_args()
    rounds, reps = (3, 2) if args.quick else (15, 10)

    torch.manual_seed(0)
    x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))
    theirs = mlp(nn.Dropout)
    ours = mlp(dn.Dropout)
    ours.load_state_dict(theirs.state_dict())
    step = interleaved(
        {"torch": step_fn(theirs, x, y), "dropkit": step_fn(ours, x, y)}, rounds, reps
    )

    big = torch.randn(1 << 22)
    grad_big = big.clone().requires_grad_(True)

    def fwd_bwd(fn: Callable[..., torch.Tensor]) -> Callable[[], None]:
        return lambda: fn(grad_big, 0.5, True).sum().backward()

    fwd = interleaved(
        {
            "torch": lambda: nn.functional.dropout(big, 0.5, True),
            "dropkit": lambda: DF.dropout(big, 0.5, True),
        },
        rounds, reps,
    )
    both = interleaved(
        {"torch": fwd_bwd(nn.functional.dropout), "dropkit": fwd_bwd(DF.dropout)}, rounds, reps
    )

    def seeded_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
        return seeded.dropout(x, p, training, seed=1234)

    seeded_fwd = interleaved(
        {"torch": lambda: nn.functional.dropout(big, 0.5, True),
         "dropkit": lambda: seeded_dropout(big, 0.5, True)},
        rounds, reps,
    )
    seeded_both = interleaved(
        {"torch": fwd_bwd(nn.functional.dropout), "dropkit": fwd_bwd(seeded_dropout)},
        rounds, reps,
    )

    print(machine())
    print()
    print("| measurement | torch (ms) | dropkit (ms) | dropkit / torch |")
    print("|---|---:|---:|---:|")
    for label, res in [
        ("MLP 784-1024-1024-10 training step, batch 128", step),
        ("dropout forward, 2^22 float32", fwd),
        ("dropout forward + backward, 2^22 float32", both),
        ("seeded.dropout forward, 2^22 float32", seeded_fwd),
        ("seeded.dropout forward + backward, 2^22 float32", seeded_both),
    ]:
        ratio = res["dropkit"] / res["torch"]
        print(f"| {label} | {res['torch'] * 1e3:.3f} | {res['dropkit'] * 1e3:.3f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
