"""The sanity tier: an ill-conditioned quadratic and a chained Rosenbrock, with noisy gradients.

Both are stochastic optimization problems: the gradient of step t is the exact
gradient plus ``sigma * eps_t`` (``eps_t`` a fixed standard-normal stream per seed),
implemented by adding ``sigma * <eps_t, x>`` to the differentiated loss. The
noise sets a floor that depends on the learning rate, so tuning the lr is a real
trade-off between speed on the flat directions and the noise floor. The
"held-out" metric is the noise-free objective itself. These tasks have no data,
so there is no separate test split: ``split="test"`` reports the same objective
(metric ``loss`` on either split).
"""
from __future__ import annotations

import numpy as np
import torch

from .core import StackedTask, gen

_CACHE: dict[tuple, object] = {}


def _noise(seed: int, steps: int, dim: int, salt: int) -> torch.Tensor:
    """[steps, dim] standard-normal gradient noise of one seed (cached; prefix-stable)."""
    key = ("noise", seed, dim, salt)
    have = _CACHE.get(key)
    if have is None or have.shape[0] < steps:
        rs = np.random.RandomState((seed * 104_729 + salt) % (2**32))
        have = torch.from_numpy(rs.standard_normal((max(steps, 1), dim)).astype(np.float32))
        _CACHE[key] = have
    return have[:steps]


class _NoisyObjective(StackedTask):
    """What both sanity tasks share: metric ``loss`` (no data, so no ``val_`` prefix), their step
    budgets, no weight decay, and the noisy-gradient loss over an ``objective``."""
    metric_name = "loss"
    steps = {"tiny": 100, "small": 500, "full": 2000}
    weight_decay = 0.0
    dim: int = 50
    sigma: float = 0.1
    salt: int = 0

    def objective(self, x: torch.Tensor) -> torch.Tensor:  # [K, dim] -> [K]
        raise NotImplementedError

    def prepare(self, copy_seeds, steps):
        per_seed = {s: _noise(s, steps, self.dim, self.salt) for s in set(copy_seeds)}
        return torch.stack([per_seed[s] for s in copy_seeds], dim=1)  # [steps, K, dim]

    def loss(self, p, ctx, t):
        x = p["x"]
        f = self.objective(x)
        return f + self.sigma * (ctx[t] * x).sum(-1), f

    def evaluate(self, p, ctx, split="val"):
        # no data, no test split: the test metric is the same noise-free objective
        return {self.metric_name: self.objective(p["x"])}


class Quadratic(_NoisyObjective):
    """f(x) = 1/2 (x - x*)^T A (x - x*), A = Q diag(lambda) Q^T, lambda log-spaced over [1e-3, 1].

    One fixed instance (Q a random rotation, x* random); the seed sets the start
    x0 = x* + N(0, I) and the gradient-noise stream (sigma = 0.1 per coordinate).
    """
    name = "quadratic"
    description = "ill-conditioned quadratic, dim 50, condition number 1e3, noisy gradients"
    dim = 50
    sigma = 0.1
    salt = 11
    cond = 1e3

    def __init__(self):
        key = ("quadratic", self.dim, self.cond)
        if key not in _CACHE:
            g = gen(12345, self.salt)
            q, r = torch.linalg.qr(torch.randn(self.dim, self.dim, generator=g, dtype=torch.float64))
            q = q * torch.sign(torch.diagonal(r))  # a uniformly random rotation
            lam = torch.logspace(0, -np.log10(self.cond), self.dim, dtype=torch.float64)
            a = (q * lam) @ q.T
            x_star = torch.randn(self.dim, generator=g, dtype=torch.float64)
            _CACHE[key] = (a.to(torch.float32), x_star.to(torch.float32))
        self.A, self.x_star = _CACHE[key]

    def init(self, seed):
        return {"x": self.x_star + torch.randn(self.dim, generator=gen(seed, self.salt), dtype=torch.float32)}

    def objective(self, x):
        d = x - self.x_star
        return 0.5 * ((d @ self.A) * d).sum(-1)


class Rosenbrock(_NoisyObjective):
    """Chained Rosenbrock, f(x) = sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2, dim 10.

    Minimum 0 at x = 1. The seed sets the start, the classic (-1.2, 1, -1.2, 1, ...)
    plus N(0, 0.1^2) per coordinate, and the gradient-noise stream (sigma = 1).
    A curved narrow valley: momentum and adaptivity matter.
    """
    name = "rosenbrock"
    description = "chained Rosenbrock, dim 10, noisy gradients"
    dim = 10
    sigma = 1.0
    salt = 13

    def init(self, seed):
        start = torch.tensor([-1.2, 1.0] * (self.dim // 2), dtype=torch.float32)
        return {"x": start + 0.1 * torch.randn(self.dim, generator=gen(seed, self.salt), dtype=torch.float32)}

    def objective(self, x):
        a, b = x[:, :-1], x[:, 1:]
        return (100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2).sum(-1)
