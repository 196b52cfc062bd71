"""A NumPy reference of dropout networks, forward and backward, for learning and as a test oracle.

The textbook ``DropoutManual`` class (a mask stored on the object, ``np.random``), done
properly: an explicit random generator instead of
``np.random``'s global state, a ``mask`` argument so a test can impose the mask torch
drew, p = 1 without a division by zero, and each layer's backward beside its forward
(as in micrograd). NumPy only: this module imports no torch.

Run a tiny network by hand::

    import numpy as np
    from dropkit.reference import MLP, SoftmaxCrossEntropy, sgd_step
    rng = np.random.default_rng(0)
    net = MLP([784, 256, 10], p_input=0.2, p_hidden=0.5, rng=rng)
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn.forward(net.forward(X, training=True), y)
    net.backward(loss_fn.backward())
    sgd_step(net.params(), net.grads(), lr=0.1)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from dropkit.errors import UsageError

__all__ = [
    "Dropout",
    "SpatialDropout",
    "Linear",
    "DropConnectLinear",
    "ReLU",
    "SoftmaxCrossEntropy",
    "MLP",
    "sgd_step",
]

Array = NDArray[np.floating]


def _check_p(name: str, p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p <= 1:
        raise UsageError(f"{name}: expected `p` to be a drop probability in [0, 1], got p={p!r}")
    return float(p)


def _scale(p: float) -> float:
    # 1 / (1 - p); at p = 1 every unit is dropped and the scale is irrelevant, not infinite.
    return 0.0 if p == 1.0 else 1.0 / (1.0 - p)


def _draw(rng: np.random.Generator, shape: tuple[int, ...], p: float) -> Array:
    return (rng.random(shape) >= p).astype(np.float64)  # 1 with probability 1 - p


class Dropout:
    """Inverted dropout: ``forward`` keeps each unit with probability 1 - p, scales by 1/(1-p).

    Args:
        p: probability of dropping a unit.
        rng: a ``numpy.random.Generator``; default ``np.random.default_rng()``.
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        self.p = _check_p(type(self).__name__, p)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.mask: Array | None = None

    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The mask's shape for an input of ``shape``: one draw per element."""
        return shape

    def forward(self, X: Array, training: bool = True, mask: Array | None = None) -> Array:
        """``X * mask / (1 - p)`` in training, ``X`` in evaluation. ``mask`` imposes the draw."""
        if not training or self.p == 0.0:
            self.mask = None
            return X
        want = self.mask_shape(X.shape)
        if mask is None:
            mask = _draw(self.rng, want, self.p)
        elif np.shape(mask) != want:
            raise UsageError(
                f"{type(self).__name__}.forward: expected a mask of shape {want}, "
                f"got {np.shape(mask)}"
            )
        self.mask = np.asarray(mask, dtype=X.dtype)
        return X * self.mask * _scale(self.p)

    def backward(self, dout: Array) -> Array:
        """Gradient flows only through kept units, with the same scale."""
        if self.mask is None:
            return dout
        return dout * self.mask * _scale(self.p)


class SpatialDropout(Dropout):
    """Drops whole channels of ``(N, C, *spatial)``: the mask is ``(N, C, 1, ...)``."""

    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) < 3:
            raise UsageError(
                f"SpatialDropout: expected an (N, C, *spatial) input, got shape {shape}"
            )
        return shape[:2] + (1,) * (len(shape) - 2)


class Linear:
    """``Y = X W^T + b`` with torch's layout (``W`` is ``(out, in)``) and initialisation."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator | None = None) -> None:
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1.0 / np.sqrt(n_in)
        self.W: Array = rng.uniform(-bound, bound, (n_out, n_in))
        self.b: Array = rng.uniform(-bound, bound, n_out)
        self.dW: Array = np.zeros_like(self.W)
        self.db: Array = np.zeros_like(self.b)
        self.X: Array | None = None

    def forward(self, X: Array, training: bool = True) -> Array:
        self.X = X
        return X @ self.W.T + self.b

    def backward(self, dout: Array) -> Array:
        if self.X is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward first")
        self.dW = dout.T @ self.X
        self.db = dout.sum(axis=0)
        return dout @ self.W

    def params(self) -> list[Array]:
        return [self.W, self.b]

    def grads(self) -> list[Array]:
        return [self.dW, self.db]


class DropConnectLinear(Linear):
    """A linear layer whose weight entries drop in training (Wan et al. 2013).

    ``forward(X, training, mask)`` uses ``W * mask / (1 - p)``; the weight gradient is
    masked the same way, the input gradient uses the dropped weight.
    """

    def __init__(
        self, n_in: int, n_out: int, p: float = 0.5, rng: np.random.Generator | None = None
    ) -> None:
        rng = rng if rng is not None else np.random.default_rng()
        super().__init__(n_in, n_out, rng)
        self.drop = Dropout(p, rng)
        self.W_used = self.W

    def forward(self, X: Array, training: bool = True, mask: Array | None = None) -> Array:
        self.X = X
        self.W_used = self.drop.forward(self.W, training, mask)  # one mask for the batch
        return X @ self.W_used.T + self.b

    def backward(self, dout: Array) -> Array:
        if self.X is None:
            raise RuntimeError("DropConnectLinear.backward: call forward first")
        self.dW = self.drop.backward(dout.T @ self.X)
        self.db = dout.sum(axis=0)
        return dout @ self.W_used


class ReLU:
    def forward(self, X: Array, training: bool = True) -> Array:
        self.positive = X > 0
        return X * self.positive

    def backward(self, dout: Array) -> Array:
        return dout * self.positive


class SoftmaxCrossEntropy:
    """Mean cross-entropy of integer labels under a softmax of the logits."""

    def forward(self, logits: Array, y: NDArray[np.integer]) -> float:
        shifted = logits - logits.max(axis=1, keepdims=True)  # no overflow in exp
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.probs = np.exp(log_probs)
        self.y = y
        return float(-log_probs[np.arange(len(y)), y].mean())

    def backward(self) -> Array:
        grad = self.probs.copy()
        grad[np.arange(len(self.y)), self.y] -= 1.0
        return grad / len(self.y)


class MLP:
    """The classic ``MLPWithDropout``: input dropout, then Linear-ReLU-Dropout per hidden layer.

    Args:
        sizes: layer widths, e.g. ``[784, 1024, 1024, 10]``.
        p_input: drop probability of the inputs. Default: 0.2.
        p_hidden: drop probability after each hidden ReLU. Default: 0.5.
        rng: a ``numpy.random.Generator``.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        p_input: float = 0.2,
        p_hidden: float = 0.5,
        rng: np.random.Generator | None = None,
    ) -> None:
        if len(sizes) < 2:
            raise UsageError(f"MLP: expected at least 2 layer sizes, got {list(sizes)}")
        rng = rng if rng is not None else np.random.default_rng()
        self.layers: list[Dropout | Linear | ReLU] = [Dropout(p_input, rng)]
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            self.layers.append(Linear(n_in, n_out, rng))
            if i < len(sizes) - 2:
                self.layers += [ReLU(), Dropout(p_hidden, rng)]

    @property
    def dropouts(self) -> list[Dropout]:
        return [layer for layer in self.layers if isinstance(layer, Dropout)]

    def forward(
        self, X: Array, training: bool = True, masks: Sequence[Array] | None = None
    ) -> Array:
        """``masks``, one per dropout layer in order, impose the draws (for testing)."""
        it = iter(masks) if masks is not None else None
        for layer in self.layers:
            if isinstance(layer, Dropout):
                X = layer.forward(X, training, next(it) if it is not None else None)
            else:
                X = layer.forward(X, training)
        return X

    def backward(self, dout: Array) -> Array:
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def params(self) -> list[Array]:
        return [p for layer in self.layers if isinstance(layer, Linear) for p in layer.params()]

    def grads(self) -> list[Array]:
        return [g for layer in self.layers if isinstance(layer, Linear) for g in layer.grads()]


def sgd_step(params: Sequence[Array], grads: Sequence[Array], lr: float) -> None:
    """Plain SGD in place: ``p -= lr * g``."""
    for p, g in zip(params, grads, strict=True):
        p -= lr * g
