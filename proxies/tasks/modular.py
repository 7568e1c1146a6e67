"""Modular addition, the grokking setting: learn (a + b) mod p from a fraction of all pairs.

All p^2 = 961 pairs (a, b) with p = 31, in one seeded permutation
(``RandomState(0)``): the first 60% (577 pairs) are the training set (full-batch
training); the other 384 pairs are split in halves, the first 192 the validation
set and the last 192 the held-out test set (``split="test"``: ``test_loss`` /
``test_acc``; the search never sees it). Before the test split existed all 384
were the validation set; the training set is unchanged. Model: a shared token
embedding (p x 32) for a and b, concatenated, an MLP 64 -> 64 (ReLU) -> p.
Metric: final validation cross-entropy (validation accuracy is an extra curve).

The training set is memorized within tens of steps while the validation loss
rises far above its initial log(p); generalization ("grokking") comes later and
depends strongly on the optimizer and on decoupled weight decay (wd = 1, the
usual grokking setting), which is why this task separates update rules sharply.
A rule that applies wd as an L2 term in the gradient (w -= lr * (g + wd * w))
shrinks this model to zero and sits at log(p). Budgets are short (p = 31 and a
60% split instead of the classic p = 97 / 50% keep it to seconds), so the metric
mostly measures how early a rule starts to generalize; tuned AdamW reaches
~0.99 validation accuracy at the small fidelity.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .core import StackedTask, accuracy, cross_entropy, gen, linear, normal

_DATA: dict[tuple, dict[str, torch.Tensor]] = {}


def modular_data(p: int, train_frac: float) -> dict[str, torch.Tensor]:
    """Inputs a, b and labels (a + b) mod p of the fixed split, int64 (cached in-process)."""
    key = (p, train_frac)
    if key not in _DATA:
        a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
        a, b = a.ravel(), b.ravel()
        y = (a + b) % p
        perm = np.random.RandomState(0).permutation(p * p)
        n_train = int(round(train_frac * p * p))
        out = {}
        n_val = (p * p - n_train) // 2
        parts = (("train", perm[:n_train]), ("val", perm[n_train:n_train + n_val]),
                 ("test", perm[n_train + n_val:]))
        for split, idx in parts:
            idx = np.sort(idx)
            out[f"a_{split}"] = torch.from_numpy(a[idx].astype(np.int64))
            out[f"b_{split}"] = torch.from_numpy(b[idx].astype(np.int64))
            out[f"y_{split}"] = torch.from_numpy(y[idx].astype(np.int64))
        _DATA[key] = out
    return _DATA[key]


class ModularAddition(StackedTask):
    name = "modular_arith"
    description = "modular addition mod 31, 60% of pairs for training (grokking), val cross-entropy"
    metric_name = "val_loss"
    steps = {"tiny": 200, "small": 800, "full": 3000}
    weight_decay = 1.0   # grokking needs decoupled weight decay of this order (AdamW lr 1e-3, wd 1)
    schedule = "warmup_constant"
    blowup = 5.0
    p = 31
    train_frac = 0.6
    d_embed = 32
    hidden = 64
    salt = 41
    #: "2": validation is half of the held-out pairs, the other half is the test split (cache keys)
    version = "2"

    def __init__(self):
        self.data = modular_data(self.p, self.train_frac)

    def init(self, seed):
        g = gen(seed, self.salt)
        p, d, h = self.p, self.d_embed, self.hidden
        return {"emb": normal(g, p, d, std=1.0),
                "w1": normal(g, h, 2 * d, std=math.sqrt(2 / (2 * d))), "b1": torch.zeros(h),
                "w2": normal(g, p, h, std=math.sqrt(1 / h))}

    def logits(self, params, a, b):
        """a, b [N] ints -> [K, N, p] logits of relu(W1 [E[a]; E[b]] + b1) -> W2.

        Computed as W1's two halves applied to the whole embedding table first
        ([K, p, hidden], cheap) and then gathered by a and b: the same function as
        concatenating embeddings, with far fewer multiply-adds when N >> p.
        """
        d = self.d_embed
        emb, w1 = params["emb"], params["w1"]
        ta = torch.bmm(emb, w1[:, :, :d].transpose(1, 2))          # [K, p, hidden]
        tb = torch.bmm(emb, w1[:, :, d:].transpose(1, 2))
        pre = ta.index_select(1, a) + tb.index_select(1, b) + params["b1"].unsqueeze(1)
        return linear(torch.relu(pre), params["w2"])

    def loss(self, params, ctx, t):
        d = self.data
        return cross_entropy(self.logits(params, d["a_train"], d["b_train"]), d["y_train"])

    def evaluate(self, params, ctx, split="val"):
        d = self.data
        z = self.logits(params, d[f"a_{split}"], d[f"b_{split}"])
        y = d[f"y_{split}"]
        return {f"{split}_loss": cross_entropy(z, y), f"{split}_acc": accuracy(z, y)}
