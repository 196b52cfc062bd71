"""One rank of the 2-process gloo test of :class:`dropkit.SeedPlan` (test_seed_plan.py).

Run by ``torch.distributed.run --nproc_per_node=2``; writes this rank's masks to
``<out>/rank<r>.pt``: per site, the masks of steps 0..2, for a plan over the whole
world (one tensor-parallel group of two ranks), a plan whose groups hold one rank each
(two data-parallel replicas), and a second plan of the same seed (a rerun).
"""

import sys

import torch
import torch.distributed as dist
from torch import nn

import dropkit
import dropkit.nn as dn


def model(backend: str) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 64), dn.Dropout(0.5, backend=backend),  # sharded
                         nn.Linear(64, 64), dn.Dropout(0.5, backend=backend))  # replicated


def masks(backend: str, group: object) -> dict[str, list[torch.Tensor]]:
    torch.manual_seed(0)  # the same weights on every rank
    net = model(backend)
    plan = dropkit.SeedPlan(net, seed=11, shared=["3"], group=group)
    x = torch.ones(16, 8)
    out: dict[str, list[torch.Tensor]] = {"1": [], "3": []}
    hooks = [net[i].register_forward_hook(
        lambda m, a, y, i=i: out[str(i)].append((y != 0).clone())) for i in (1, 3)]
    for _ in range(3):
        net(x)
        plan.step()
    for h in hooks:
        h.remove()
    return out


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    singles = [dist.new_group([r]) for r in range(dist.get_world_size())]  # every rank calls
    result = {}
    for backend in ("torch", "seeded"):
        result[backend] = {
            "world": masks(backend, None),
            "singles": masks(backend, singles[rank]),
            "rerun": masks(backend, None),
        }
    torch.save(result, f"{sys.argv[1]}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
