"""Activation checkpointing: the recompute draws exactly the forward's masks.

Every dropkit variant with a generator, on every backend it has, under
``torch.utils.checkpoint`` with ``use_reentrant`` and ``preserve_rng_state`` each True
and False, with its own generator and with torch's global one: the checkpointed
output, input gradient and parameter gradients equal those of the same module run
without checkpointing, bit for bit, and every generator ends where the plain run left
it. Before dropkit replayed draws, 9 of the 16 cells of ``Dropout`` failed here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint, checkpoint_sequential

import dropkit.functional as F
import dropkit.nn as dn

IDS = torch.tensor([[0, 3, 3, 7], [1, 2, 9, 3]])
Build = Callable[[torch.Generator | None, str], nn.Module]


def _embedding(g: torch.Generator | None, backend: str) -> nn.Module:
    class Embed(nn.Module):  # the checkpointed function needs a float input with grad
        def __init__(self) -> None:
            super().__init__()
            self.drop = dn.EmbeddingDropout(nn.Embedding(10, 4), 0.5, generator=g)

        def forward(self, x: Tensor) -> Tensor:
            return self.drop(IDS) * x

    return Embed()


# name -> (build(generator, backend), input shape, backends)
CASES: dict[str, tuple[Build, tuple[int, ...], tuple[str, ...]]] = {
    "Dropout": (lambda g, b: dn.Dropout(0.5, generator=g, backend=b), (8, 16),
                ("torch", "seeded")),
    "AlphaDropout": (lambda g, b: dn.AlphaDropout(0.3, generator=g, backend=b), (8, 16),
                     ("torch", "seeded")),
    "Dropout1d": (lambda g, b: dn.Dropout1d(0.5, generator=g), (4, 6, 10), ("torch",)),
    "Dropout2d": (lambda g, b: dn.Dropout2d(0.5, generator=g), (4, 6, 5, 5), ("torch",)),
    "Dropout3d": (lambda g, b: dn.Dropout3d(0.5, generator=g), (2, 6, 3, 4, 4), ("torch",)),
    "FeatureAlphaDropout": (lambda g, b: dn.FeatureAlphaDropout(0.3, generator=g),
                            (4, 6, 5, 5), ("torch",)),
    "GaussianDropout": (lambda g, b: dn.GaussianDropout(0.3, generator=g), (8, 16), ("torch",)),
    "GaussianNoise": (lambda g, b: dn.GaussianNoise(0.5, generator=g), (8, 16), ("torch",)),
    "LockedDropout": (lambda g, b: dn.LockedDropout(0.5, generator=g), (5, 4, 8), ("torch",)),
    "EmbeddingDropout": (_embedding, (2, 4, 4), ("torch",)),
    "DropPath": (lambda g, b: dn.DropPath(0.5, generator=g), (16, 3, 4), ("torch",)),
    "DropBlock2d": (lambda g, b: dn.DropBlock2d(0.3, 3, generator=g), (4, 6, 8, 8), ("torch",)),
    "DropBlock3d": (lambda g, b: dn.DropBlock3d(0.3, 2, generator=g), (2, 3, 5, 5, 5),
                    ("torch",)),
    "DropConnectLinear": (lambda g, b: dn.DropConnectLinear(16, 12, p=0.5, generator=g,
                                                            backend=b), (8, 16),
                          ("torch", "seeded")),
    "DropConnect": (lambda g, b: dn.DropConnect(nn.Linear(16, 12), 0.5, generator=g,
                                                backend=b), (8, 16), ("torch", "seeded")),
    "ConcreteDropout": (lambda g, b: dn.ConcreteDropout(nn.Linear(16, 12), 0.2, generator=g),
                        (8, 16), ("torch",)),
}
CELLS = [
    pytest.param(name, backend, reentrant, preserve, own,
                 id=f"{name}-{backend}-{'reentrant' if reentrant else 'nonreentrant'}-"
                    f"{'preserve' if preserve else 'nopreserve'}-{'gen' if own else 'global'}")
    for name, (_, _, backends) in CASES.items()
    for backend, reentrant, preserve, own in itertools.product(
        backends, (True, False), (True, False), (True, False))
]


def _step(name: str, backend: str, own: bool,
          run: Callable[[nn.Module, Tensor], Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """One forward/backward of case ``name`` through ``run``: its output and gradients,
    and the states every generator ends in."""
    build, shape, _ = CASES[name]
    torch.manual_seed(0)  # the weights, and the global stream of the no-generator cells
    g = torch.Generator().manual_seed(1) if own else None
    module = build(g, backend)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2)).requires_grad_()
    y = run(module, x)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    (y * w).sum().backward()
    grads = [x.grad] + [p.grad for p in module.parameters()]
    states = [torch.get_rng_state()] + ([g.get_state()] if g is not None else [])
    return [y.detach(), *grads], states


@pytest.mark.parametrize(("name", "backend", "reentrant", "preserve", "own"), CELLS)
def test_checkpoint_recompute_draws_the_forward_masks(name: str, backend: str, reentrant: bool,
                                                      preserve: bool, own: bool) -> None:
    plain, plain_states = _step(name, backend, own, lambda m, x: m(x))
    ckpt, ckpt_states = _step(name, backend, own, lambda m, x: checkpoint(
        m, x, use_reentrant=reentrant, preserve_rng_state=preserve))
    for a, b in zip(plain, ckpt, strict=True):
        assert a is not None and b is not None
        assert torch.equal(a, b)
    for a, b in zip(plain_states, ckpt_states, strict=True):
        assert torch.equal(a, b)  # the caller's streams end where the plain run left them


class Block(nn.Module):
    """A transformer-style residual MLP block: three dropout sites on one generator."""

    def __init__(self, g: torch.Generator | None, backend: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(16)
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 16)
        self.drop1 = dn.Dropout(0.3, generator=g, backend=backend)
        self.drop2 = dn.Dropout(0.3, generator=g, backend=backend)
        self.path = dn.DropPath(0.3, generator=g)

    def forward(self, x: Tensor) -> Tensor:
        h = self.drop1(torch.relu(self.fc1(self.norm(x))))
        return x + self.path(self.drop2(self.fc2(h)))


def _model_step(backend: str, run: Callable[[nn.Sequential, Tensor], Tensor]
                ) -> list[Tensor]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(*[Block(g, backend) for _ in range(4)])
    x = torch.randn(8, 5, 16, generator=torch.Generator().manual_seed(2)).requires_grad_()
    y = run(model, x)
    y.square().sum().backward()
    return [y.detach(), x.grad, g.get_state(), *(p.grad for p in model.parameters())]


# a reentrant checkpoint nested in another one sees no input with grad in the outer
# forward (it runs under no_grad) and says so; the recompute has grad
@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")
@pytest.mark.parametrize("backend", ["torch", "seeded"])
@pytest.mark.parametrize("reentrant", [True, False])
def test_checkpointed_model_trains_on_the_gradients_of_the_plain_model(backend: str,
                                                                      reentrant: bool) -> None:
    """Four blocks sharing one generator, in segments, one segment holding a nested
    checkpoint: every gradient equals the plain model's to the last bit."""
    plain = _model_step(backend, lambda m, x: m(x))

    def segments(m: nn.Sequential, x: Tensor) -> Tensor:
        return checkpoint_sequential(m, 2, x, use_reentrant=reentrant,
                                     preserve_rng_state=False)

    def nested(m: nn.Sequential, x: Tensor) -> Tensor:
        def outer(h: Tensor) -> Tensor:
            h = m[0](h)
            h = checkpoint(m[1], h, use_reentrant=reentrant, preserve_rng_state=False)
            return m[2](h)

        h = checkpoint(outer, x, use_reentrant=reentrant, preserve_rng_state=False)
        return m[3](h)

    for run in (segments, nested):
        for a, b in zip(plain, _model_step(backend, run), strict=True):
            assert torch.equal(a, b)


def test_a_second_backward_through_a_retained_graph_replays_again() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 16).requires_grad_()
    y = checkpoint(dn.Dropout(0.5, generator=g), x, use_reentrant=False)
    y.sum().backward(retain_graph=True)
    first = x.grad.clone()
    x.grad = None
    y.sum().backward()
    assert torch.equal(first, x.grad)
    assert torch.equal(first != 0, y != 0)


def test_functional_draws_inside_a_checkpoint_are_replayed() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 16).requires_grad_()
    y = checkpoint(lambda t: F.dropout(t.exp(), 0.5, generator=g), x, use_reentrant=True,
                   preserve_rng_state=False)
    y.sum().backward()
    assert torch.equal(x.grad != 0, y != 0)


class _DrawInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        return F.dropout(grad, 0.5)  # a forward computation inside a backward pass


def test_a_draw_in_backward_outside_torch_checkpoint_raises() -> None:
    x = torch.randn(4, requires_grad=True)
    with pytest.raises(RuntimeError, match="outside torch.utils.checkpoint"):
        _DrawInBackward.apply(x).sum().backward()


def test_a_recompute_that_draws_where_the_forward_did_not_raises() -> None:
    layer = dn.Dropout(0.5).eval()
    x = torch.randn(8, 16, requires_grad=True)
    y = checkpoint(lambda t: layer(t).exp(), x, use_reentrant=False)
    layer.train()  # the recompute now draws a mask the forward never used
    with pytest.raises(RuntimeError, match="did not draw"):
        y.sum().backward()


def test_draws_outside_checkpoint_use_the_given_generator() -> None:
    """No region: the draw is the plain one (the same bits as before, grad or no grad)."""
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            a = F.dropout(torch.ones(64), 0.5, generator=torch.Generator().manual_seed(5))
        b = torch.ones(64).uniform_(generator=torch.Generator().manual_seed(5)) < 0.5
        assert torch.equal(a != 0, b)
