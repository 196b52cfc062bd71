"""Acquisition functions: direct formulas, BatchBALD against brute force, bounds."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dropkit import acquisition as A


def _probs(t: int = 12, n: int = 30, c: int = 4, seed: int = 0, scale: float = 2.0
           ) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(t, n, c, generator=g, dtype=torch.float64) * scale).softmax(-1)


def _h(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.log()).sum(-1)


def test_scores_against_direct_formulas() -> None:
    p = _probs()
    mean = p.mean(0)
    assert torch.allclose(A.max_entropy(p), _h(mean))
    assert torch.allclose(A.bald(p), _h(mean) - _h(p).mean(0))  # PE - EE
    assert (A.bald(p) >= -1e-12).all()
    votes = torch.stack([(p.argmax(-1) == c).sum(0) for c in range(4)], -1)
    assert torch.allclose(A.variation_ratio(p), (1 - votes.max(-1).values / 12).double())
    std = ((p - mean) ** 2).mean(0).sqrt().mean(-1)
    assert torch.allclose(A.mean_std(p), std)


def test_hand_made_extremes() -> None:
    certain = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])  # every sample sure of class 0
    split = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # the samples disagree completely
    flat = torch.full((2, 1, 2), 0.5)  # every sample unsure
    assert A.bald(certain).item() == 0 and A.max_entropy(certain).item() == 0
    assert A.bald(split).item() == pytest.approx(math.log(2))
    assert A.bald(flat).item() == pytest.approx(0.0, abs=1e-7)
    assert A.max_entropy(flat).item() == pytest.approx(math.log(2))
    assert A.variation_ratio(split).item() == 0.5 and A.mean_std(split).item() == 0.5


def _joint_mi(p: torch.Tensor, batch: list[int]) -> float:
    """I(y_batch; w) by enumerating every label configuration."""
    t, _, c = p.shape
    h = 0.0
    for config in itertools.product(range(c), repeat=len(batch)):
        prob = torch.ones(t, dtype=p.dtype)
        for i, y in zip(batch, config, strict=True):
            prob = prob * p[:, i, y]
        q = prob.mean().item()
        h -= q * math.log(q) if q > 0 else 0.0
    return h - sum(_h(p[:, i]).mean().item() for i in batch)


def test_batchbald_is_greedy_joint_mutual_information() -> None:
    p = _probs(t=8, n=7, c=3, seed=4)
    chosen: list[int] = []
    for _ in range(3):  # the greedy rule, with the joint entropy brute-forced
        rest = [i for i in range(7) if i not in chosen]
        chosen.append(max(rest, key=lambda i: _joint_mi(p, [*chosen, i])))
    assert A.batchbald(p, 3).tolist() == chosen


def test_batchbald_with_k_1_is_bald_s_top_point() -> None:
    for seed in range(5):
        p = _probs(seed=seed)
        assert A.batchbald(p, 1).tolist() == A.top_k(A.bald(p), 1).tolist()


def test_on_a_pool_of_duplicates_batchbald_picks_distinct_examples() -> None:
    base = _probs(t=16, n=10, c=5, seed=7)
    pool = base.repeat(1, 3, 1)  # every example three times (index i, i + 10, i + 20)
    k = 6
    picked = A.batchbald(pool, k).tolist()
    assert len(set(picked)) == k  # never the same index twice
    bases = [i % 10 for i in picked]
    topk_bases = [i % 10 for i in A.top_k(A.bald(pool), k).tolist()]
    assert len(set(bases)) == k  # no example twice through its copies
    assert len(set(topk_bases)) < k  # top-k BALD takes the copies of its best examples


def test_sampled_joint_entropy_stays_close_to_exact_choices() -> None:
    p = _probs(t=16, n=40, c=3, seed=2)
    exact = A.batchbald(p, 5, joint_samples=10**6)
    sampled = A.batchbald(p, 5, joint_samples=30, generator=torch.Generator().manual_seed(0))
    assert exact[:3].tolist() == sampled[:3].tolist()  # 27 configurations: still exact
    assert len(set(sampled.tolist())) == 5


def test_stochastic_draws_follow_their_weights() -> None:
    scores = torch.tensor([0.0, math.log(3.0)])  # softmax: 1/4 and 3/4
    g = torch.Generator().manual_seed(0)
    n = 4000
    second = sum(int(A.stochastic(scores, 1, "softmax", generator=g)) for _ in range(n))
    assert abs(second / n - 0.75) < 5 * math.sqrt(0.75 * 0.25 / n)
    for mode in A.STOCHASTIC_MODES:
        picks = A.stochastic(torch.rand(20, generator=g), 5, mode, generator=g)
        assert len(set(picks.tolist())) == 5


def test_random_and_top_k() -> None:
    a = A.random(10, generator=torch.Generator().manual_seed(1))
    b = A.random(10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (10,)
    assert A.top_k(torch.tensor([0.1, 0.9, 0.5]), 2).tolist() == [1, 2]


@pytest.mark.parametrize(("call", "match"), [
    (lambda: A.bald(torch.rand(3, 4)), r"expected float probability samples of shape "
                                       r"\(T, N, C\), got a torch.float32 tensor of shape"),
    (lambda: A.bald(torch.rand(2, 3, 4)), "summing to 1 along the last dim"),
    (lambda: A.top_k(torch.rand(5), 6), r"expected `k` to be an int in \[1, 6\)"),
    (lambda: A.batchbald(_probs(), 0), r"expected `k` to be an int in \[1, 31\)"),
    (lambda: A.stochastic(torch.rand(5), 2, "greedy"), "expected `mode` to be one of"),
    (lambda: A.stochastic(torch.rand(5), 2, temperature=0), "expected `temperature` > 0"),
    (lambda: A.stochastic(torch.tensor([-1.0, 1.0]), 1), "needs scores >= 0"),
])
def test_bad_input_is_one_clear_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(),
                               torch.nn.Dropout(0.5), torch.nn.Linear(16, 3)).eval()


def test_score_pool_streams_batches_through_mc_predict() -> None:
    import dropkit

    model, pool = _model(), torch.randn(50, 6, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    scores = A.score_pool(model, pool, "bald", samples=8, batch_size=16)
    torch.manual_seed(5)  # the same draws, batch by batch, by hand
    by_hand = torch.cat([A.bald(dropkit.mc_predict(model, x, 8).softmax(-1))
                         for x in pool.split(16)])
    assert scores.shape == (50,) and torch.equal(scores, by_hand)
    assert not model.training  # modes untouched


def test_score_pool_and_acquire_draw_from_a_generator() -> None:
    model, pool = _model(), torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    before = torch.get_rng_state()
    a, b, c = (A.score_pool(model, pool, "bald", samples=6, batch_size=16,
                            generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a, b) and not torch.equal(a, c)
    picks = [A.acquire(model, pool, 5, "max-entropy", 6, strategy="loop",
                       generator=torch.Generator().manual_seed(9)) for _ in range(2)]
    assert torch.equal(picks[0], picks[1])


def test_consistent_pool_scores_do_not_depend_on_the_batching() -> None:
    model, pool = _model(), torch.randn(30, 6, generator=torch.Generator().manual_seed(2))
    a = A.score_pool(model, pool, "bald", samples=6, batch_size=7, consistent=11)
    b = A.score_pool(model, pool, "bald", samples=6, batch_size=30, consistent=11)
    assert torch.allclose(a, b, atol=1e-6)  # the same six networks for every point


def test_score_pool_takes_a_dataloader_of_pairs() -> None:
    model = _model()
    data = torch.utils.data.TensorDataset(torch.randn(20, 6), torch.zeros(20))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    for name in A.SCORES:
        assert A.score_pool(model, loader, name, samples=4).shape == (20,)


def test_score_pool_refuses_batchbald_and_bad_names() -> None:
    with pytest.raises(ValueError, match="BatchBALD is not a per-point score"):
        A.score_pool(_model(), torch.randn(4, 6), "batchbald")
    with pytest.raises(ValueError, match="expected `acquisition` to be one of"):
        A.score_pool(_model(), torch.randn(4, 6), "entropy")


class TestAcquire:
    def _pool(self, n: int = 40) -> torch.Tensor:
        return torch.randn(n, 6, generator=torch.Generator().manual_seed(4))

    def test_each_acquisition_equals_its_pipeline_by_hand(self) -> None:
        import dropkit

        model, pool = _model(), self._pool()
        g = torch.Generator().manual_seed(3)
        assert torch.equal(A.acquire(model, pool, 5, "random", seed=3),
                           A.top_k(A.random(40, generator=g), 5))
        torch.manual_seed(8)
        got = A.acquire(model, pool, 5, "max-entropy", 6, batch_size=16)
        torch.manual_seed(8)
        assert torch.equal(got, A.top_k(A.score_pool(model, pool, "max-entropy", 6,
                                                     batch_size=16), 5))
        bald = A.score_pool(model, pool, "bald", 6, consistent=3)
        g = torch.Generator().manual_seed(3)
        assert torch.equal(A.acquire(model, pool, 5, "power-bald", 6, seed=3),
                           A.stochastic(bald.clamp_min(0), 5, "power", generator=g))
        best = A.top_k(bald, 10)  # candidates = 2 * k
        probs = dropkit.mc_predict(model, pool[best], 6, consistent=3).softmax(-1)
        g = torch.Generator().manual_seed(3)
        want = best[A.batchbald(probs, 5, generator=g)]
        got = A.acquire(model, pool, 5, "batchbald", 6, seed=3, candidates=2)
        assert torch.equal(got, want) and len(set(got.tolist())) == 5
        # more consistent networks for the candidates than for the scores
        probs = dropkit.mc_predict(model, pool[best], 12, consistent=3).softmax(-1)
        g = torch.Generator().manual_seed(3)
        assert torch.equal(A.acquire(model, pool, 5, "batchbald", 6, seed=3, candidates=2,
                                     candidate_samples=12),
                           best[A.batchbald(probs, 5, generator=g)])

    def test_a_dataloader_pool_gives_the_tensor_pool_s_choice(self) -> None:
        model, pool = _model(), self._pool()
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(pool, torch.zeros(40)), batch_size=9)
        for name in ("batchbald", "power-bald", "random"):
            assert torch.equal(A.acquire(model, loader, 4, name, 5, seed=1),
                               A.acquire(model, pool, 4, name, 5, seed=1)), name

    @pytest.mark.parametrize("call, match", [
        (lambda m, p: A.acquire(m, p, 3, "entropy"), r"^acquire: expected `acquisition` to "
                                                     r"be one of \['random', 'bald'"),
        (lambda m, p: A.acquire(m, p, 41, "bald"), r"^acquire: expected `k`"),
        (lambda m, p: A.acquire(m, iter([p]), 3, "bald"),
         r"^acquire: expected a tensor pool or a DataLoader over a sized dataset, got"),
        (lambda m, p: A.acquire(m, p, 3, "bald", seed=-1), r"^acquire: expected `seed`"),
    ])
    def test_bad_arguments_are_one_clear_error(self, call, match) -> None:
        with pytest.raises((ValueError, TypeError), match=match):
            call(_model(), self._pool())


@pytest.mark.slow
def test_two_gloo_ranks_select_what_one_process_selects(tmp_path) -> None:
    """torchrun with 2 gloo ranks: the pool sharded, the same indices on both ranks, and,
    for the consistent acquisitions, the indices of one process."""
    import sys
    from pathlib import Path

    from conftest import torchrun

    worker = Path(__file__).with_name("acquisition_worker.py")
    torchrun(str(worker), str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    sys.path.insert(0, str(worker.parent))
    from acquisition_worker import run  # the same computation in this one process

    single = run()
    assert r0["batches"] == [0, 2, 4, 6] and r1["batches"] == [1, 3, 5]  # sharded
    assert single["batches"] == list(range(7))
    for key in ("consistent scores", "bald", "batchbald", "power-bald", "random",
                "consistent True"):
        assert torch.equal(r0[key], r1[key]), key  # every rank: the same result
    # the consistent networks are those of one process (bald's samples come from each
    # rank's own generator, and consistent=True's seed from rank 0's)
    assert torch.allclose(r0["consistent scores"], single["consistent scores"], atol=1e-6)
    for key in ("batchbald", "power-bald", "random"):
        assert torch.equal(r0[key], single[key]), key
