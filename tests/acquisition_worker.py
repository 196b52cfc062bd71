"""One rank of the 2-process gloo test of :func:`dropkit.acquisition.acquire` and
:func:`dropkit.acquisition.score_pool` (test_acquisition.py).

Run by ``torch.distributed.run --nproc_per_node=2``; writes this rank's results to
``<out>/rank<r>.pt``. Imported by the test, :func:`run` gives one process's results.
"""

import sys

import torch
from torch import nn

import dropkit.nn as dn
from dropkit import acquisition as A


def run() -> dict[str, object]:
    torch.manual_seed(0)  # the same weights and pool on every rank
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), dn.Dropout(0.5), nn.Linear(32, 4))
    pool = torch.randn(50, 6)
    seen: set[float] = set()
    handle = model[0].register_forward_pre_hook(lambda m, a: seen.add(a[0][0, 0].item()))
    out: dict[str, object] = {
        "consistent scores": A.score_pool(model, pool, "bald", 6, batch_size=8, consistent=5),
    }
    handle.remove()
    # the batches this rank scored: those whose first row its model saw
    out["batches"] = [i for i, b in enumerate(pool.split(8)) if b[0, 0].item() in seen]
    out["bald"] = A.acquire(model, pool, 5, "bald", 6, batch_size=8)
    for name in ("batchbald", "power-bald", "random"):
        out[name] = A.acquire(model, pool, 5, name, 6, seed=7, batch_size=8)
    out["consistent True"] = A.score_pool(model, pool, "bald", 4, batch_size=8,
                                          consistent=True)
    return out


def main() -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    result = run()
    torch.save(result, f"{sys.argv[1]}/rank{dist.get_rank()}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
