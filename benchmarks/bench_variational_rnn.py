"""Cost of variational recurrent dropout, as ratios measured in one run.

Run::

    .venv/bin/python benchmarks/bench_variational_rnn.py            # full
    .venv/bin/python benchmarks/bench_variational_rnn.py --quick    # a smoke run

One training step (forward, loss on the last output, backward, SGD) of a 2-layer,
256-unit LSTM on sequences of length 100, batch 64, 32 input features, CPU:

- torch's ``nn.LSTM`` without recurrent dropout (the baseline of the ratios);
- ``VariationalLSTM(mask_per="batch")``: weights dropped once per batch, torch's kernel;
- ``VariationalLSTM(mask_per="sequence")``: the paper's per-sequence masks, dropkit's
  step loop (input projections of all steps in one product outside the loop);
- a plain Python step loop with per-sequence masks, each step's gates written out in
  separate ops (``x @ W_ih.T + (h * m) @ W_hh.T + b``, sigmoids, tanh): the loop the
  paper's method needs when written directly, the issue's "plain loop";
- the same loop around torch's fused ``nn.LSTMCell``: the best one writes by hand.

All at dropout = recurrent_dropout = 0.25. ``--flush-denormal`` runs them all with
``torch.set_flush_denormal(True)``: the gradients of a loss on the last step decay
through time into denormal floats, which the CPU computes slowly, more so with dropped
weights (zero columns). Configurations run interleaved
(``bench_mlp_step.interleaved``); each reports its median.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from bench_mlp_step import interleaved, machine
from torch import nn

import dropkit.nn as dn

T, N, F, H, LAYERS, P = 100, 64, 32, 256, 2, 0.25


class CellLoop(nn.Module):
    """A step loop written by hand, masks per sequence: ``fused`` runs nn.LSTMCell's
    kernel, otherwise the gates are written out in separate ops."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.fused = fused
        self.cells = nn.ModuleList(nn.LSTMCell(F if k == 0 else H, H) for k in range(LAYERS))

    def step(self, cell: nn.LSTMCell, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fused:
            return cell(x, (h, c))
        gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for cell in self.cells:
            n = x.shape[1]
            h = c = x.new_zeros(n, H)
            m_x = torch.bernoulli(x.new_full((n, x.shape[2]), 1 - P)) / (1 - P)
            m_h = torch.bernoulli(x.new_full((n, H), 1 - P)) / (1 - P)
            outs = []
            for t in range(x.shape[0]):
                h, c = self.step(cell, x[t] * m_x, h * m_h, c)
                outs.append(h)
            x = torch.stack(outs)
        return x


def step_fn(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        out[-1].square().mean().backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    parser.add_argument("--flush-denormal", action="store_true",
                        help="torch.set_flush_denormal(True) for every configuration")
    args = parser.parse_args()
    torch.set_flush_denormal(args.flush_denormal)
    rounds, reps = (3, 1) if args.quick else (7, 2)
    x = torch.randn(T, N, F, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    models = {
        "torch nn.LSTM, no recurrent dropout": nn.LSTM(F, H, LAYERS),
        "VariationalLSTM mask_per='batch'": dn.VariationalLSTM(
            F, H, LAYERS, dropout=P, recurrent_dropout=P, mask_per="batch"),
        "VariationalLSTM mask_per='sequence'": dn.VariationalLSTM(
            F, H, LAYERS, dropout=P, recurrent_dropout=P, mask_per="sequence"),
        "plain Python step loop, gates in separate ops": CellLoop(fused=False),
        "hand loop around nn.LSTMCell (fused cell)": CellLoop(fused=True),
    }
    times = interleaved({k: step_fn(m.train(), x) for k, m in models.items()}, rounds, reps)
    base = times[next(iter(models))]
    print(machine() + f", flush_denormal={args.flush_denormal}")
    print()
    print("| configuration | step (ms) | / nn.LSTM |")
    print("|---|---:|---:|")
    for label, t in times.items():
        print(f"| {label} | {t * 1e3:.1f} | {t / base:.2f} |")
    names = list(models)
    seq = times[names[2]]
    print(f"\nplain loop / mask_per='sequence': {times[names[3]] / seq:.2f}; "
          f"nn.LSTMCell loop / mask_per='sequence': {times[names[4]] / seq:.2f}")


if __name__ == "__main__":
    main()
