"""The NumPy reference equals torch autograd under the same mask, and passes gradient checks."""

import ast
import inspect

import numpy as np
import pytest
import torch

import dropkit.reference as ref


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar function, one coordinate at a time."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def test_module_imports_no_torch() -> None:
    tree = ast.parse(inspect.getsource(ref))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert "torch" not in imported


class TestDropout:
    @pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
    def test_forward_backward_equal_torch_autograd(self, p: float) -> None:
        X = _rng(1).standard_normal((4, 6))
        d = ref.Dropout(p, _rng(2))
        out = d.forward(X)
        mask = d.mask if d.mask is not None else np.ones_like(X)
        dout = _rng(3).standard_normal(X.shape)
        x_t = torch.tensor(X, requires_grad=True)
        scale = 0.0 if p == 1 else 1 / (1 - p)
        out_t = x_t * torch.tensor(mask) * scale
        out_t.backward(torch.tensor(dout))
        np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=0, atol=1e-15)
        np.testing.assert_allclose(d.backward(dout), x_t.grad.numpy(), rtol=0, atol=1e-15)

    def test_matches_dropkit_functional_with_torchs_mask(self) -> None:
        import dropkit.functional as F

        x = torch.randn(8, 5, dtype=torch.float64)
        out = F.dropout(x, 0.4, generator=torch.Generator().manual_seed(0))
        mask = (out != 0).double().numpy()
        ours = ref.Dropout(0.4).forward(x.numpy(), mask=mask)
        np.testing.assert_allclose(ours, out.numpy(), rtol=1e-15)

    def test_eval_is_identity_and_backward_passes_through(self) -> None:
        X = _rng().standard_normal((3, 3))
        d = ref.Dropout(0.5)
        assert d.forward(X, training=False) is X
        assert d.backward(X) is X

    def test_drop_fraction_within_binomial_bound(self) -> None:
        n, p = 1_000_000, 0.3
        d = ref.Dropout(p, _rng(4))
        d.forward(np.ones(n))
        dropped = n - d.mask.sum()
        assert abs(dropped - n * p) <= 5 * np.sqrt(n * p * (1 - p))

    def test_bad_rate_and_mask(self) -> None:
        with pytest.raises(ValueError, match=r"^Dropout: expected `p` to be a drop probability"):
            ref.Dropout(1.5)
        with pytest.raises(ValueError, match=r"^Dropout.forward: expected a mask of shape"):
            ref.Dropout(0.5).forward(np.ones((2, 2)), mask=np.ones(3))


class TestSpatialDropout:
    def test_whole_channels_and_torch_equality(self) -> None:
        X = _rng().standard_normal((2, 8, 3, 3))
        d = ref.SpatialDropout(0.5, _rng(1))
        out = d.forward(X)
        assert d.mask.shape == (2, 8, 1, 1)
        x_t = torch.tensor(X, requires_grad=True)
        out_t = x_t * torch.tensor(d.mask) * 2
        out_t.sum().backward()
        np.testing.assert_allclose(out, out_t.detach().numpy(), atol=1e-15)
        np.testing.assert_allclose(d.backward(np.ones_like(X)), x_t.grad.numpy(), atol=1e-15)

    def test_rank(self) -> None:
        with pytest.raises(ValueError, match=r"^SpatialDropout: expected an \(N, C, \*spatial\)"):
            ref.SpatialDropout(0.5).forward(np.ones((2, 3)))


class TestDropConnectLinear:
    def test_equals_torch_autograd_with_the_same_mask(self) -> None:
        layer = ref.DropConnectLinear(5, 3, p=0.4, rng=_rng(1))
        X = _rng(2).standard_normal((4, 5))
        out = layer.forward(X)
        dout = _rng(3).standard_normal(out.shape)
        dX = layer.backward(dout)
        W = torch.tensor(layer.W, requires_grad=True)
        b = torch.tensor(layer.b, requires_grad=True)
        x = torch.tensor(X, requires_grad=True)
        out_t = x @ (W * torch.tensor(layer.drop.mask) / 0.6).T + b
        out_t.backward(torch.tensor(dout))
        for ours, theirs in [(out, out_t), (dX, x.grad), (layer.dW, W.grad), (layer.db, b.grad)]:
            np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-14)

    def test_eval_uses_the_full_weight(self) -> None:
        layer = ref.DropConnectLinear(5, 3, p=0.4, rng=_rng(1))
        X = _rng(2).standard_normal((4, 5))
        np.testing.assert_allclose(layer.forward(X, training=False), X @ layer.W.T + layer.b)


class TestMLP:
    def _torch_twin(self, net: ref.MLP, X, y, masks):
        """The same network in torch with the reference's masks; returns loss and grads."""
        params = [torch.tensor(p, requires_grad=True) for p in net.params()]
        h = torch.tensor(X)
        it = iter(masks)
        linears = [layer for layer in net.layers if isinstance(layer, ref.Linear)]
        for i in range(len(linears)):
            d = net.dropouts[i]
            h = h * torch.tensor(next(it)) / (1 - d.p)
            h = h @ params[2 * i].T + params[2 * i + 1]
            if i < len(linears) - 1:
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h, torch.tensor(y))
        loss.backward()
        return loss.item(), [p.grad.numpy() for p in params]

    def test_loss_and_gradients_equal_torch_autograd(self) -> None:
        net = ref.MLP([6, 8, 8, 3], p_input=0.2, p_hidden=0.5, rng=_rng(0))
        X = _rng(1).standard_normal((5, 6))
        y = np.array([0, 2, 1, 1, 0])
        loss_fn = ref.SoftmaxCrossEntropy()
        loss = loss_fn.forward(net.forward(X), y)
        net.backward(loss_fn.backward())
        masks = [d.mask for d in net.dropouts]
        loss_t, grads_t = self._torch_twin(net, X, y, masks)
        assert loss == pytest.approx(loss_t, rel=1e-13)
        for ours, theirs in zip(net.grads(), grads_t, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-14)

    def test_numerical_gradient_check(self) -> None:
        net = ref.MLP([4, 5, 3], p_input=0.25, p_hidden=0.5, rng=_rng(5))
        X = _rng(6).standard_normal((3, 4))
        y = np.array([2, 0, 1])
        loss_fn = ref.SoftmaxCrossEntropy()
        net.forward(X)
        masks = [d.mask for d in net.dropouts]

        def loss() -> float:
            return loss_fn.forward(net.forward(X, masks=masks), y)

        loss()
        net.backward(loss_fn.backward())
        for param, grad in zip(net.params(), net.grads(), strict=True):
            np.testing.assert_allclose(grad, _numeric_grad(loss, param), rtol=1e-6, atol=1e-8)

    def test_sgd_with_dropout_lowers_the_loss(self) -> None:
        rng = _rng(7)
        X = rng.standard_normal((64, 10))
        y = (X[:, 0] > 0).astype(int)
        net = ref.MLP([10, 32, 2], p_input=0.1, p_hidden=0.3, rng=rng)
        loss_fn = ref.SoftmaxCrossEntropy()
        first = loss_fn.forward(net.forward(X, training=False), y)
        for _ in range(200):
            loss_fn.forward(net.forward(X), y)
            net.backward(loss_fn.backward())
            ref.sgd_step(net.params(), net.grads(), lr=0.5)
        assert loss_fn.forward(net.forward(X, training=False), y) < first / 4

    def test_needs_two_sizes(self) -> None:
        with pytest.raises(ValueError, match=r"^MLP: expected at least 2 layer sizes"):
            ref.MLP([4])
