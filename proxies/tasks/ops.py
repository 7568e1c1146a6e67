"""Stacked building blocks for hand-written tasks: every op acts per copy along dim 0.

Also the seeded randomness every task uses (``gen``, ``normal``) and the per-copy
minibatch orders (``epoch_order``, ``stacked_order``): a copy's data order is a
pure function of its seed, so a copy trained in a K-copy run sees the same batches
as alone, and a longer fidelity's order extends a shorter one's.
"""
from __future__ import annotations

import numpy as np
import torch


def seed_of(seed: int, salt: int) -> int:
    """The torch seed of (seed, salt): tasks salt their streams so they do not share numbers."""
    return (int(seed) * 1_000_003 + salt) % (2**63 - 1)


def gen(seed: int, salt: int) -> torch.Generator:
    """A torch Generator seeded with ``seed_of(seed, salt)``."""
    return torch.Generator().manual_seed(seed_of(seed, salt))


def normal(g: torch.Generator, *shape: int, std: float) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float32) * std


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x [K, N, in] @ w[K, out, in]^T (+ b [K, out]) -> [K, N, out] (torch Linear layout)."""
    if b is None:
        return torch.bmm(x, w.transpose(1, 2))
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per copy: logits [K, N, C], y [K, N] or [N] -> [K]."""
    K, N, C = logits.shape
    y = y.expand(K, N) if y.dim() == 1 else y
    return torch.nn.functional.cross_entropy(logits.reshape(K * N, C), y.reshape(K * N),
                                             reduction="none").view(K, N).mean(1)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction correct per copy: logits [K, N, C], y [K, N] or [N] -> [K]."""
    return (logits.argmax(-1) == y).to(torch.float32).mean(-1)


def layer_norm(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last dim with a per-copy affine: x [K, ..., D], gain/bias [K, D]."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    y = torch.nn.functional.layer_norm(x, x.shape[-1:])
    return y * gain.view(shape) + bias.view(shape)


_ORDER_CACHE: dict[tuple, np.ndarray] = {}


def epoch_order(n: int, batch: int, seed: int, steps: int, salt: int) -> np.ndarray:
    """[steps, batch] example indices: concatenated seeded permutations of range(n) (cached).

    A longer run's order extends a shorter one's, so fidelities see the same data prefix.
    """
    key = (n, batch, seed, salt)
    have = _ORDER_CACHE.get(key)
    if have is None or have.shape[0] < steps:
        rs = np.random.RandomState((seed * 7919 + salt) % (2**32))
        need = steps * batch
        stream = np.concatenate([rs.permutation(n) for _ in range(-(-need // n))])
        have = stream[:need].reshape(steps, batch)
        _ORDER_CACHE[key] = have
    return have[:steps]


def stacked_order(copy_seeds: list[int], n: int, batch: int, steps: int, salt: int) -> torch.Tensor:
    """[steps, K, batch] int64 indices: copy k follows the order of its seed."""
    per_seed = {s: epoch_order(n, batch, s, steps, salt) for s in set(copy_seeds)}
    return torch.from_numpy(np.stack([per_seed[s] for s in copy_seeds], axis=1).astype(np.int64))
