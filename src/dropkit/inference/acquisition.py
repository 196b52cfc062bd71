"""Acquisition functions for active learning with Monte Carlo dropout.

Every function takes class-probability samples ``probs`` of shape ``(T, N, C)``: T
Monte Carlo samples (:func:`dropkit.mc_predict`, then softmax) of N pool points over C
classes. A score is high where labelling the point is expected to help most.

Papers: Houlsby et al. 2011 (BALD); Gal, Islam & Ghahramani 2017, "Deep Bayesian Active
Learning with Image Data" (BALD, max entropy, variation ratios, mean std with MC
dropout); Kampffmeyer et al. 2016 (mean std); Kirsch, van Amersfoort & Gal 2019,
"BatchBALD"; Kirsch et al. 2023, "Stochastic Batch Acquisition". Learned from baal's
heuristics and BatchBALD's reference code (its sampled joint entropy).

Under ``torch.distributed`` (``torchrun``), :func:`score_pool` and :func:`acquire` shard
the pool's batches across the ranks of ``group``, gather only the scores (and, for
BatchBALD, the candidates' probabilities), and return the same result on every rank; a
consistent seed is one for the whole group, so sample t is the same network everywhere.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from dropkit._checks import check_int
from dropkit._dist import world as place
from dropkit._rng import seed_from
from dropkit.errors import UsageError, UsageTypeError
from dropkit.inference import uncertainty as U

__all__ = ["bald", "max_entropy", "variation_ratio", "mean_std", "random", "top_k",
           "batchbald", "stochastic", "score_pool", "acquire", "STOCHASTIC_MODES", "SCORES",
           "ACQUISITIONS"]

STOCHASTIC_MODES = ("power", "softmax", "softrank")
_SUM_TOLERANCE = 1e-3  # probabilities of a sample must sum to 1 along C within this


def _check_probs(fn: str, probs: object) -> Tensor:
    if not isinstance(probs, Tensor) or not probs.is_floating_point() or probs.dim() != 3:
        got = (f"a {probs.dtype} tensor of shape {tuple(probs.shape)}"
               if isinstance(probs, Tensor) else type(probs).__name__)
        raise UsageError(f"{fn}: expected float probability samples of shape (T, N, C), "
                         f"got {got}")
    if probs.numel() and (probs.min() < 0 or
                          (probs.sum(-1) - 1).abs().max() > _SUM_TOLERANCE):
        raise UsageError(f"{fn}: expected probabilities (>= 0, summing to 1 along the last "
                         "dim C); got values that do not (pass softmax of the logits)")
    return probs


def _check_k(fn: str, k: object, n: int) -> int:
    return check_int(fn, k, "k", 1, n + 1)


def bald(probs: Tensor) -> Tensor:
    """Mutual information between the label and the weights: ``H[E p] - E H[p]``, ``(N,)``."""
    return U.mutual_information(_check_probs("bald", probs))


def max_entropy(probs: Tensor) -> Tensor:
    """Entropy of the mean prediction ``H[E p]``, ``(N,)``."""
    return U.predictive_entropy(_check_probs("max_entropy", probs))


def variation_ratio(probs: Tensor) -> Tensor:
    """``1 -`` the share of samples voting for the modal class, ``(N,)``."""
    return U.variation_ratio(_check_probs("variation_ratio", probs))


def mean_std(probs: Tensor) -> Tensor:
    """The standard deviation of each class's probability over samples, averaged over
    classes (Kampffmeyer et al. 2016), ``(N,)``."""
    probs = _check_probs("mean_std", probs)
    return probs.std(0, correction=0).mean(-1)


def random(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Uniform scores for ``n`` points: random acquisition, the baseline."""
    return torch.rand(check_int("random", n, "n", 1), generator=generator, dtype=torch.float64)


def top_k(scores: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` highest scores, highest first."""
    if not isinstance(scores, Tensor) or scores.dim() != 1:
        raise UsageError(f"top_k: expected scores of shape (N,), got "
                         f"{tuple(scores.shape) if isinstance(scores, Tensor) else scores!r}")
    return scores.topk(_check_k("top_k", k, len(scores))).indices


def _entropy_sum(joint: Tensor) -> Tensor:
    return -torch.special.xlogy(joint, joint)


def batchbald(probs: Tensor, k: int, *, joint_samples: int = 10_000,
              generator: torch.Generator | None = None) -> Tensor:
    """A batch of ``k`` points chosen greedily by the mutual information of their joint
    labels with the weights (Kirsch et al. 2019), highest first.

    Each step adds the point that maximizes ``H[y_1..y_n] - sum_i E H[y_i]``. The joint
    entropy is exact while the batch's label configurations number at most
    ``joint_samples``; beyond, ``joint_samples`` configurations are drawn (ancestrally,
    from ``generator``) and the entropy is their importance-weighted estimate, as in
    the paper. The samples must be *consistent*: sample t is one network for every
    point. With ``k = 1`` the choice is BALD's top point.
    """
    probs = _check_probs("batchbald", probs)
    t, n, c = probs.shape
    k = _check_k("batchbald", k, n)
    joint_samples = check_int("batchbald", joint_samples, "joint_samples", c)
    p = probs.to(torch.float64)
    conditional = U.expected_entropy(p)  # E_t H[y_i | w_t], additive over the batch
    prefix = p.new_ones(t, 1)  # (T, M): prod_i p(y_i | w_t) for each configuration m
    exact = True
    chosen: list[int] = []
    taken = torch.zeros(n, dtype=torch.bool)
    spent = 0.0
    for _ in range(k):
        joint = torch.einsum("tm,tnc->nmc", prefix, p) / t  # p(y_prefix = m, y_x = c)
        if exact:
            entropy = _entropy_sum(joint).sum((1, 2))
        else:  # configurations drawn from p(y_prefix): weigh by 1 / p(y_prefix)
            marginal = prefix.mean(0)  # (M,)
            entropy = (_entropy_sum(joint) / marginal[None, :, None]).sum(2).mean(1)
        score = entropy - (spent + conditional)
        score[taken] = -math.inf
        best = int(score.argmax())
        chosen.append(best)
        taken[best] = True
        spent += float(conditional[best])
        extended = prefix[:, :, None] * p[:, best, None, :]  # (T, M, C)
        if exact and extended.shape[1] * c <= joint_samples:
            prefix = extended.reshape(t, -1)
        elif exact:  # too many configurations: draw them from the exact p(y_1..y_n)
            weights = extended.reshape(t, -1).mean(0)
            picks = torch.multinomial(weights, joint_samples, replacement=True,
                                      generator=generator)
            prefix, exact = extended.reshape(t, -1)[:, picks], False
        else:  # extend each drawn configuration by a label drawn from its conditional
            given = extended.mean(0)  # (S, C), proportional to p(y_new | y_prefix = s)
            labels = torch.multinomial(given, 1, generator=generator).squeeze(1)
            prefix = extended[:, torch.arange(extended.shape[1]), labels]
    return torch.tensor(chosen)


def stochastic(scores: Tensor, k: int, mode: str = "power", temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
    """``k`` points drawn without replacement with probabilities from the scores
    (Kirsch et al. 2023): ``"power"`` ``∝ score ** (1 / temperature)`` (scores >= 0),
    ``"softmax"`` ``∝ exp(score / temperature)``, ``"softrank"``
    ``∝ rank ** (-1 / temperature)`` (rank 1: the highest score). Drawn as the top k of
    the log-weights plus Gumbel noise."""
    if mode not in STOCHASTIC_MODES:
        raise UsageError(f"stochastic: expected `mode` to be one of {STOCHASTIC_MODES}, got "
                         f"mode={mode!r}")
    if isinstance(temperature, bool) or not (isinstance(temperature, (int, float))
                                              and temperature > 0):
        raise UsageError(f"stochastic: expected `temperature` > 0, got "
                         f"temperature={temperature!r}")
    if not isinstance(scores, Tensor) or scores.dim() != 1:
        raise UsageError("stochastic: expected scores of shape (N,)")
    k = _check_k("stochastic", k, len(scores))
    s = scores.to(torch.float64)
    if mode == "power":
        if (s < 0).any():
            raise UsageError("stochastic: mode 'power' needs scores >= 0 (BALD, entropy); "
                             "use 'softmax' or 'softrank' for others")
        logits = torch.log(s.clamp_min(torch.finfo(torch.float64).tiny)) / temperature
    elif mode == "softmax":
        logits = s / temperature
    else:
        ranks = torch.empty_like(s)
        ranks[s.argsort(descending=True)] = torch.arange(1, len(s) + 1, dtype=s.dtype)
        logits = -torch.log(ranks) / temperature
    uniform = torch.rand(len(s), generator=generator, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-300, 1.0 - 1e-16)))
    return (logits + gumbel).topk(k).indices


#: The per-point scores by name, as :func:`score_pool` and the command line take them.
SCORES: dict[str, Callable[[Tensor], Tensor]] = {
    "bald": bald, "max-entropy": max_entropy, "variation-ratio": variation_ratio,
    "mean-std": mean_std,
}


#: Everything :func:`acquire` takes: the scores, ``random``, ``batchbald`` (on the
#: consistent probabilities of the highest-BALD candidates) and ``power-bald``.
ACQUISITIONS = ("random", *SCORES, "batchbald", "power-bald")


def _inputs(pool: Tensor | Iterable[Any], batch_size: int) -> Iterable[Any]:
    if isinstance(pool, Tensor):
        return pool.split(batch_size)
    # a DataLoader (or any iterable) of inputs, or of (input, target, ...) tuples
    return (b[0] if isinstance(b, (tuple, list)) else b for b in pool)


def _gather(local: list[tuple[int, Tensor]], group: Any, world: int) -> list[Tensor]:
    """Every rank's ``(batch index, tensor)`` pairs, in batch order, on every rank."""
    if world == 1:
        return [t for _, t in local]
    import torch.distributed as dist

    device = local[0][1].device if local else torch.device("cpu")
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, [(i, t.cpu()) for i, t in local], group=group)
    pairs = sorted(itertools.chain.from_iterable(gathered), key=lambda pair: pair[0])
    return [t.to(device) for _, t in pairs]


def _group_seed(consistent: bool | int, group: Any, world: int,
                generator: torch.Generator | None = None) -> bool | int:
    """``consistent`` with True made one seed for the whole group (rank 0's draw, from
    ``generator`` or the global generator)."""
    if consistent is not True:
        return consistent
    seed = [seed_from("score_pool", generator)]
    if world > 1:
        import torch.distributed as dist

        src = 0 if group is None else dist.get_global_rank(group, 0)
        dist.broadcast_object_list(seed, src=src, group=group)
    return seed[0]


def score_pool(model: nn.Module, pool: Tensor | Iterable[Any], acquisition: str = "bald",
               samples: int = 20, *, batch_size: int = 256, strategy: str = "auto",
               output: Any = None, consistent: bool | int = False, group: Any = None,
               shard: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """The acquisition score of every pool point, ``(N,)``, streamed batch by batch.

    Each batch goes through :func:`dropkit.mc_predict` (``samples`` passes, the model's
    modes and buffers untouched) and only its scores are kept, never the whole pool's
    samples. ``pool`` is a tensor (split into ``batch_size`` rows) or an iterable such as
    a ``DataLoader`` of inputs or of ``(input, target)`` pairs. ``acquisition`` is a name
    in :data:`SCORES`. With ``consistent`` (True or a seed) every batch is scored by the
    same T networks (:mod:`dropkit.inference.consistent`). BatchBALD is not a per-point score: draw
    its candidates' probabilities with ``mc_predict(model, candidates, T,
    consistent=seed)`` and call :func:`batchbald`, or call :func:`acquire`.

    Under ``torch.distributed`` (and ``shard``), rank r of ``group`` scores batches r,
    r + W, r + 2W, ... of the W ranks' pool (every rank passes the same pool) and every
    rank returns all N scores; ``consistent=True`` is one seed for the group.
    ``generator``: the source of every draw (one seed from it, rank 0's under
    ``torch.distributed``; batch i draws from that seed and i, so the scores do not
    depend on how the batches are sharded); default: torch's global generator.
    """
    from dropkit.inference.mc import mc_predict  # the acquisition functions need no model code

    if acquisition not in SCORES:
        extra = (" (BatchBALD is not a per-point score: call batchbald on the candidates' "
                 "mc_predict(..., consistent=seed) probabilities, or acquire)"
                 if acquisition == "batchbald" else "")
        raise UsageError(f"score_pool: expected `acquisition` to be one of {list(SCORES)}, "
                         f"got acquisition={acquisition!r}{extra}")
    samples = check_int("score_pool", samples, "samples", 2)
    batch_size = check_int("score_pool", batch_size, "batch_size", 1)
    score = SCORES[acquisition]
    rank, world = place(group) if shard else (0, 1)
    consistent = _group_seed(consistent, group, world, generator)  # the same networks
    base = _group_seed(True, group, world, generator) if generator is not None else None

    def batch_generator(i: int) -> torch.Generator | None:
        return None if base is None else torch.Generator().manual_seed(base * 1_000_003 + i)

    local = [(i, score(mc_predict(model, x, samples, strategy=strategy, output=output,
                                  consistent=consistent, generator=batch_generator(i)
                                  ).softmax(-1)))
             for i, x in enumerate(_inputs(pool, batch_size)) if i % world == rank]
    parts = _gather(local, group, world)
    if not parts:
        raise UsageError("score_pool: the pool is empty")
    return torch.cat(parts)


def _pool_size(pool: Tensor | Iterable[Any]) -> int:
    if isinstance(pool, Tensor):
        return len(pool)
    dataset = getattr(pool, "dataset", None)
    if dataset is not None and hasattr(dataset, "__len__"):
        return len(dataset)
    raise UsageTypeError(f"acquire: expected a tensor pool or a DataLoader over a sized dataset, "
                    f"got {type(pool).__name__}")


def _rows(pool: Tensor | Iterable[Any], index: Tensor) -> Tensor:
    """The pool's inputs at ``index`` (a tensor's rows, a DataLoader dataset's items)."""
    if isinstance(pool, Tensor):
        return pool[index.to(pool.device)]
    dataset = getattr(pool, "dataset", None)
    if dataset is None or not hasattr(dataset, "__getitem__"):
        raise UsageTypeError(f"acquire: BatchBALD reads its candidates again: expected a tensor "
                        f"pool or a DataLoader over an indexable dataset, got "
                        f"{type(pool).__name__}")
    items = [dataset[i] for i in index.tolist()]
    return torch.stack([it[0] if isinstance(it, (tuple, list)) else it for it in items])


def acquire(model: nn.Module, pool: Tensor | Iterable[Any], k: int,
            acquisition: str = "bald", samples: int = 20, *, seed: int = 0,
            candidates: int = 4, candidate_samples: int | None = None,
            consistent: bool = False, batch_size: int = 256, strategy: str = "auto",
            output: Any = None, group: Any = None, shard: bool = True,
            generator: torch.Generator | None = None) -> Tensor:
    """Indices of the ``k`` pool points to label next, ``(k,)``, by ``acquisition``.

    ``acquisition`` is one of :data:`ACQUISITIONS`. The per-point scores take the top k
    of :func:`score_pool` (their samples from torch's global generator, as
    :func:`dropkit.mc_predict` draws them, or with ``consistent`` from the same T
    networks for every point, seeded by ``seed``, as BatchBALD's paper scores BALD: then
    near-copies of a point score alike and top k takes them together); ``random`` is
    seeded by ``seed``;
    ``power-bald`` draws k points with probability proportional to BALD
    (:func:`stochastic`, Kirsch et al. 2023); ``batchbald`` scores BALD on consistent
    samples, keeps the ``candidates * k`` best, draws their probabilities with
    ``candidate_samples`` consistent networks (default ``samples``; the batch's mutual
    information cannot exceed log of their number, so a batch of k needs more than BALD
    does), and selects greedily (:func:`batchbald`, Kirsch et al. 2019). The last
    two sample the networks from ``seed``, so a call is reproducible. Under
    ``torch.distributed`` the work is sharded across ``group`` (see :func:`score_pool`)
    and every rank returns the same indices. Scores drawn without ``consistent`` follow
    ``strategy``: under ``"auto"`` the strategy timed fastest draws them, so the same
    global seed can give other samples on another machine or in a resumed process; pass
    an explicit ``strategy`` for picks reproducible across processes. ``generator``: the
    source of the per-point scores' draws (:func:`score_pool`); default: torch's global
    generator.
    """
    from dropkit.inference.mc import mc_predict

    if acquisition not in ACQUISITIONS:
        raise UsageError(f"acquire: expected `acquisition` to be one of {list(ACQUISITIONS)}, "
                         f"got acquisition={acquisition!r}")
    seed = check_int("acquire", seed, "seed", 0, 2**31)
    candidates = check_int("acquire", candidates, "candidates", 1)
    candidate_samples = check_int("acquire", samples if candidate_samples is None
                                  else candidate_samples, "candidate_samples", 2)
    n = _pool_size(pool)
    k = _check_k("acquire", k, n)
    g = torch.Generator().manual_seed(seed)
    options = {"batch_size": batch_size, "strategy": strategy, "output": output,
               "group": group, "shard": shard, "generator": generator}
    if acquisition == "random":
        return top_k(random(n, generator=g), k)
    if acquisition in SCORES:
        return top_k(score_pool(model, pool, acquisition, samples,
                                consistent=seed if consistent else False, **options), k)
    scores = score_pool(model, pool, "bald", samples, consistent=seed, **options)
    if acquisition == "power-bald":
        return stochastic(scores.clamp_min(0), k, "power", generator=g)
    best = top_k(scores, min(n, candidates * k)).cpu()
    rank, world = place(group) if shard else (0, 1)
    shards = best.tensor_split(world)
    local = [(rank, mc_predict(model, _rows(pool, shards[rank]), candidate_samples,
                               strategy="loop", output=output, consistent=seed).softmax(-1))
             ] if len(shards[rank]) else []
    probs = torch.cat(_gather(local, group, world), dim=1)
    return best[batchbald(probs, k, generator=g).cpu()]
