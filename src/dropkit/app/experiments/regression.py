"""The UCI regression protocol: MC dropout as Gal & Ghahramani 2016 ran it, and the deep
ensemble of Lakshminarayanan et al. 2017 beside it.

One split: a seeded random 90/10 partition of the rows; inputs and targets standardized
with the training part's statistics (``standardized_regression`` of the data module);
scores in the target's original units.

MC dropout: one hidden layer of ReLU units with dropout on its input and its hidden layer,
Adam on the squared error plus the L2 penalty ``l^2 (1 - p) / (2 N tau)`` on the weights
(Gal & Ghahramani's, length-scale ``l = 0.01``), which makes it the variational
objective; one network per (``p``, ``tau``) of a grid trained on the first 80% of the
training part, and the one with the highest log-likelihood on the last 20% tested, as
the authors' code does (their README speaks of a refit on the whole training part; their
code tests the validated network); the test log-likelihood averages the ``T`` samples'
Gaussians of precision ``tau``.

The deep ensemble: networks that predict a mean and a variance, trained on the Gaussian
negative log-likelihood with adversarial examples, mixed into one Gaussian.

The networks of a grid (or of an ensemble) train side by side as one
:class:`StackedMLP`: Adam is elementwise, so K networks stacked along a leading dim
train exactly as K separate ones, each on its own order of the data, at about the cost of
one. Sampling goes through dropkit: each network is exported to a
:class:`~dropkit.app.models.RegressionMLP` and sampled by :func:`dropkit.mc_predict`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from dropkit.app.experiments.data import Dataset, standardized_regression
from dropkit.app.experiments.engine import MC_STRATEGY
from dropkit.app.models import RegressionMLP
from dropkit.mask import uniform_noise

__all__ = ["split", "Scores", "StackedMLP", "fit", "dropout_networks", "dropout_scores",
           "dropout_split", "ensemble", "ensemble_scores", "LENGTH_SCALE",
           "VALIDATION_FRACTION"]

LENGTH_SCALE = 1e-2  # the prior length-scale l of Gal & Ghahramani's weight penalty
VALIDATION_FRACTION = 0.2  # the part of the training split that chooses (p, tau)


def split(n: int, seed: int, test_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Split ``seed``'s random partition of ``n`` rows: (train, test) indices."""
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round((1 - test_fraction) * n))
    return perm[:n_train], perm[n_train:]


@dataclass(frozen=True)
class Scores:
    """One split's test scores in the target's units: RMSE of the predictive mean and the
    mean log-likelihood of the test targets (``mc_se``: the Monte Carlo standard error of
    that log-likelihood, for a sampled predictive; 0 otherwise)."""

    rmse: float
    ll: float
    mc_se: float = 0.0


class StackedMLP(nn.Module):
    """K networks of one hidden ReLU layer, side by side: (K, B, F) -> (K, B, outputs).

    ``rates``: network k's drop rate on its input and its hidden layer (0: none), drawn
    through :func:`dropkit.mask.uniform_noise`. Initialised as ``nn.Linear`` is, from
    ``generator``.
    """

    def __init__(self, rates: Sequence[float], n_features: int, hidden: int, outputs: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        k = len(rates)

        def uniform(*shape: int, fan_in: int) -> nn.Parameter:
            bound = 1 / math.sqrt(fan_in)
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound,
                                                             generator=generator))

        self.w1 = uniform(k, n_features, hidden, fan_in=n_features)
        self.b1 = uniform(k, 1, hidden, fan_in=n_features)
        self.w2 = uniform(k, hidden, outputs, fan_in=hidden)
        self.b2 = uniform(k, 1, outputs, fan_in=hidden)
        self.keep: Tensor
        self.register_buffer("keep", 1 - torch.tensor(rates, dtype=torch.float32).view(k, 1, 1))
        self.generator = generator

    def _drop(self, x: Tensor) -> Tensor:
        if not self.training or bool(self.keep.eq(1).all()):
            return x
        kept = uniform_noise(x, generator=self.generator, batch_dim=None) < self.keep
        return x * kept / self.keep

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self._drop(x) @ self.w1 + self.b1)
        return self._drop(h) @ self.w2 + self.b2

    def exported(self, k: int) -> RegressionMLP:
        """Network ``k`` as a :class:`~dropkit.app.models.RegressionMLP` with dropkit's
        dropout (one output), to sample with :func:`dropkit.mc_predict`."""
        p = 1 - float(self.keep[k])
        net = RegressionMLP(self.w1.shape[1], self.w1.shape[2], p, p)
        first, last = net.net[1], net.net[4]
        assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)
        with torch.no_grad():
            first.weight.copy_(self.w1[k].T)
            first.bias.copy_(self.b1[k, 0])
            last.weight.copy_(self.w2[k, :, :1].T)
            last.bias.copy_(self.b2[k, 0, :1])
        return net


Loss = Callable[[StackedMLP, Tensor, Tensor], Tensor]  # (K, B, F), (K, B) -> (K,)


def fit(net: StackedMLP, loss: Loss, data: Dataset, *, epochs: int, batch_size: int,
        lr: float, penalty: Tensor | None = None, seed: int) -> StackedMLP:
    """Adam on the sum of the K networks' losses over minibatches of ``data``'s training
    part, each network in its own seeded order; ``penalty`` (K,): network k's L2 penalty
    on its weights, added to its loss as Keras's ``l2`` adds it."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    k, n = net.w1.shape[0], len(data.x_train)
    # network i's order: its own stream, the same whatever networks train beside it
    orders = [torch.Generator().manual_seed(seed * 65_537 + i) for i in range(k)]
    net.train()
    for _ in range(epochs):
        perms = torch.stack([torch.randperm(n, generator=g) for g in orders])
        for i in range(0, n, batch_size):
            idx = perms[:, i : i + batch_size]
            total = loss(net, data.x_train[idx], data.y_train[idx])
            if penalty is not None:
                total = total + penalty * (net.w1.pow(2).sum((1, 2)) + net.w2.pow(2).sum((1, 2)))
            opt.zero_grad()
            total.sum().backward()
            opt.step()
    return net


def _squared_error(net: StackedMLP, x: Tensor, y: Tensor) -> Tensor:
    return (net(x).squeeze(-1) - y).pow(2).mean(1)


def dropout_networks(data: Dataset, grid: Sequence[tuple[float, float]], *, hidden: int,
                     epochs: int, seed: int) -> StackedMLP:
    """One MC dropout network per (p, tau) of ``grid``, trained side by side on ``data``
    (Adam, learning rate 0.001, batch 128, as the authors' Keras code)."""
    rates = [p for p, _ in grid]
    net = StackedMLP(rates, data.n_features, hidden, 1, torch.Generator().manual_seed(seed))
    n = len(data.x_train)
    penalty = torch.tensor([LENGTH_SCALE**2 * (1 - p) / (2 * n * tau) for p, tau in grid])
    return fit(net, _squared_error, data, epochs=epochs, batch_size=128, lr=1e-3,
               penalty=penalty, seed=seed + 1)


def dropout_scores(net: nn.Module, data: Dataset, tau: float, samples: int, seed: int,
                   batches: int = 10) -> Scores:
    """RMSE of the MC mean and test log-likelihood of ``samples`` passes of ``net`` (a
    dropkit network, sampled by :func:`dropkit.mc_predict`; ``tau``: the model precision
    in the target's units). The log-likelihood's Monte Carlo standard error is the spread
    of ``batches`` disjoint estimates of ``samples / batches`` passes each, over
    sqrt(batches)."""
    from dropkit import uncertainty as U
    from dropkit.inference.mc import mc_predict

    draws = mc_predict(net, data.x_test, samples, strategy=MC_STRATEGY,
                       generator=torch.Generator().manual_seed(seed))
    draws = draws.double() * data.target_std + data.target_mean  # (T, N), the target's units
    target = data.y_test.double() * data.target_std + data.target_mean
    ll = U.regression_log_likelihood(draws, target, tau).item()
    parts = [U.regression_log_likelihood(d, target, tau).item()
             for d in draws.chunk(batches)] if samples >= 2 * batches else []
    se = float(np.std(parts, ddof=1) / math.sqrt(len(parts))) if parts else 0.0
    return Scores(U.rmse(draws, target).item(), ll, se)


def dropout_split(x: np.ndarray, y: np.ndarray, seed: int, rates: Sequence[float],
                  taus: Sequence[float], *, hidden: int, epochs: int, samples: int,
                  validation_samples: int) -> tuple[Scores, tuple[float, float]]:
    """MC dropout on split ``seed`` of (x, y) as the authors' code runs it: one network
    per (p, tau) of the grid trained on the first 80% of the training part, the one with
    the highest log-likelihood on the last 20% (``validation_samples`` passes) tested
    with ``samples`` passes. Both parts are standardized with the first 80%'s statistics.
    Returns the test scores and the chosen (p, tau)."""
    train, test = split(len(x), seed)
    cut = int((1 - VALIDATION_FRACTION) * len(train))
    validation = standardized_regression("validation", x, y, train[:cut], train[cut:])
    grid = [(p, tau) for p in rates for tau in taus]
    nets = dropout_networks(validation, grid, hidden=hidden, epochs=epochs, seed=seed)
    lls = [dropout_scores(nets.exported(k), validation, tau, validation_samples, seed).ll
           for k, (_, tau) in enumerate(grid)]
    best = int(np.argmax(lls))
    tested = standardized_regression("test", x, y, train[:cut], test)
    return dropout_scores(nets.exported(best), tested, grid[best][1], samples, seed), grid[best]


def _gaussian(out: Tensor) -> tuple[Tensor, Tensor]:
    """A mean-and-variance head: the variance a softplus, plus 1e-6 for stability."""
    return out[..., 0], nn.functional.softplus(out[..., 1]) + 1e-6


def _nll(net: StackedMLP, x: Tensor, y: Tensor) -> Tensor:
    mean, var = _gaussian(net(x))
    return (0.5 * (var.log() + (y - mean).pow(2) / var + math.log(2 * math.pi))).mean(1)


def ensemble(data: Dataset, members: int, *, hidden: int, epochs: int, lr: float,
             adversarial: float | None, seed: int) -> StackedMLP:
    """``members`` mean-and-variance networks (no dropout), side by side, each from its
    own initialisation and order of the training part, on the Gaussian negative
    log-likelihood (batch 100). ``adversarial``: the fast-gradient-sign step (Goodfellow
    et al. 2015) as a fraction of each input's range over the training part, its loss
    added to the clean one (Lakshminarayanan et al.: 0.01), or None."""
    net = StackedMLP([0.0] * members, data.n_features, hidden, 2,
                     torch.Generator().manual_seed(seed))
    step = None
    if adversarial is not None:
        step = adversarial * (data.x_train.max(0).values - data.x_train.min(0).values)

    def loss(net: StackedMLP, x: Tensor, y: Tensor) -> Tensor:
        if step is None:
            return _nll(net, x, y)
        x = x.detach().requires_grad_(True)
        clean = _nll(net, x, y)
        (grad,) = torch.autograd.grad(clean.sum(), x, retain_graph=True)
        return clean + _nll(net, (x + step * grad.sign()).detach(), y)

    return fit(net, loss, data, epochs=epochs, batch_size=100, lr=lr, seed=seed + 1).eval()


def ensemble_scores(net: StackedMLP, data: Dataset) -> Scores:
    """RMSE of the ensemble's mean and the log-likelihood of the test targets under the
    Gaussian with the mixture's mean and variance, in the target's units."""
    with torch.no_grad():
        means, variances = _gaussian(net.eval()(data.x_test.expand(net.w1.shape[0], -1, -1)))
    means, variances = means.double(), variances.double()
    mean = means.mean(0)
    var = (variances + means**2).mean(0) - mean**2
    scale = data.target_std
    target = data.y_test.double() * scale + data.target_mean
    mean_units = mean * scale + data.target_mean
    ll = torch.distributions.Normal(mean_units, var.sqrt() * scale).log_prob(target).mean()
    rmse = (mean_units - target).pow(2).mean().sqrt()
    return Scores(rmse.item(), ll.item())
