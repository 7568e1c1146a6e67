"""Logistic regression and a 2-layer MLP on scikit-learn's bundled 8x8 digits (1797 images).

Fixed split, one seeded permutation (``RandomState(0)``) of the 1797 images:
the first 360 are the validation split, the next 360 the held-out test split,
the remaining 1077 the training split (disjoint; the validation images are the
same 360 as before the test split existed, which was carved out of the former
1437-image training portion). Pixels scaled to [0, 1]. Minibatch training
(batch 32) in a seeded epoch order per seed; the metric is the final validation
cross-entropy (validation accuracy is kept as an extra curve), so the tasks
measure generalization, not only training loss. ``split="test"`` reports
``test_loss`` / ``test_acc`` on the test images instead; the search never sees them.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .core import StackedTask, accuracy, cross_entropy, gen, linear, normal, stacked_order

_DATA: dict[str, torch.Tensor] = {}


def digits_data() -> dict[str, torch.Tensor]:
    """x_train [1077, 64], y_train, x_val [360, 64], y_val, x_test [360, 64], y_test (cached in-process)."""
    if not _DATA:
        # imported when the data is first built: sklearn.datasets takes ~1.4 s to import (measured
        # 2026-12-01 on the 2-core container, after torch) and most processes never build this data
        from sklearn.datasets import load_digits
        d = load_digits()
        x = torch.from_numpy((d.data / 16.0).astype(np.float32))
        y = torch.from_numpy(d.target.astype(np.int64))
        perm = torch.from_numpy(np.random.RandomState(0).permutation(len(y)))
        n_val = n_test = 360
        val, test, train = perm[:n_val], perm[n_val:n_val + n_test], perm[n_val + n_test:]
        _DATA.update(x_val=x[val], y_val=y[val], x_test=x[test], y_test=y[test],
                     x_train=x[train].contiguous(), y_train=y[train].contiguous())
    return _DATA


class _Digits(StackedTask):
    metric_name = "val_loss"
    batch = 32
    weight_decay = 1e-2
    schedule = "warmup_cosine"
    blowup = 5.0
    salt = 0
    #: "2": the training split lost 360 images to the test split (enters the evaluators' cache keys)
    version = "2"

    def __init__(self):
        self.data = digits_data()

    def prepare(self, copy_seeds, steps):
        return stacked_order(copy_seeds, len(self.data["y_train"]), self.batch, steps, self.salt)

    def logits(self, p, x):  # x [K, N, 64] -> [K, N, 10]
        raise NotImplementedError

    def loss(self, p, ctx, t):
        idx = ctx[t]                                  # [K, B]
        return cross_entropy(self.logits(p, self.data["x_train"][idx]), self.data["y_train"][idx])

    def evaluate(self, p, ctx, split="val"):
        K = next(iter(p.values())).shape[0]
        x, y = self.data[f"x_{split}"], self.data[f"y_{split}"]
        z = self.logits(p, x.expand(K, *x.shape))
        return {f"{split}_loss": cross_entropy(z, y), f"{split}_acc": accuracy(z, y)}


class DigitsLogReg(_Digits):
    """Multinomial logistic regression 64 -> 10; weights N(0, 0.01^2), bias 0."""
    name = "digits_logreg"
    description = "logistic regression on sklearn digits, val cross-entropy"
    steps = {"tiny": 60, "small": 400, "full": 1600}
    salt = 21

    def init(self, seed):
        g = gen(seed, self.salt)
        return {"w": normal(g, 10, 64, std=0.01), "b": torch.zeros(10)}

    def logits(self, p, x):
        return linear(x, p["w"], p["b"])


class DigitsMLP(_Digits):
    """MLP 64 -> 64 (ReLU) -> 10, weights N(0, 2/fan_in) and N(0, 1/fan_in), biases 0.

    Width 64 rather than 128: half the work per copy for a similar tuned result
    (AdamW, small fidelity, seed 0: val loss 0.079 vs 0.064 nats, accuracy 0.983 vs 0.981).

    Kept hand-written (batched ``bmm`` ops) rather than a generic ``ModuleTask``: the same
    MLP as a ModuleTask takes 1.24x this task's CPU time at tiny and 1.51x at small
    (18 copies, AdamW, ``bench/proxy_sweep.py --generic``, 2026-12-01, 1 thread, loaded machine).
    """
    name = "digits_mlp"
    description = "2-layer MLP (64-64-10) on sklearn digits, val cross-entropy"
    steps = {"tiny": 60, "small": 400, "full": 1600}
    hidden = 64
    salt = 22

    def init(self, seed):
        g = gen(seed, self.salt)
        h = self.hidden
        return {"w1": normal(g, h, 64, std=math.sqrt(2 / 64)), "b1": torch.zeros(h),
                "w2": normal(g, 10, h, std=math.sqrt(1 / h)), "b2": torch.zeros(10)}

    def logits(self, p, x):
        return linear(torch.relu(linear(x, p["w1"], p["b1"])), p["w2"], p["b2"])
