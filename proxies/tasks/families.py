"""Task families built on the generic ``ModuleTask``: variety for transfer (architecture, data,
loss, batch size, depth, normalization), each a model, a data function and a loss.

| task | model | norm | loss | batch | data (train/val/test) |
|---|---|---|---|---|---|
| digits_cnn | 2 conv layers (8, 16 ch) + linear | batch norm | cross-entropy | 48 | sklearn digits 8x8 (1077/360/360) |
| seq_reverse | 1-block attention | layer norm | per-token CE | 32 | generated sequences (4000/256/256) |
| text_rnn | GRU (hidden 48), 16 steps | none | per-char CE | 16 | stdlib docstrings (disjoint modules) |
| digits_ae | autoencoder 64-32-8-32-64 | none | squared error | 32 | sklearn digits |
| diabetes_reg | MLP 10-64-64-1 | layer norm | squared error | 16 | sklearn diabetes (266/88/88) |
| embed_memo | embedding 2048x32 + linear | none | cross-entropy | 128 | random labels (memorize; val = train) |
| cancer_bce | MLP 30-32-32-1 | batch norm | binary CE | 32 | sklearn breast_cancer (341/114/114) |
| wine_deep | MLP, 6 hidden layers of 32 | layer norm, dropout 0.1 | cross-entropy | 16 | sklearn wine (106/36/36) |

Batch norm layers keep no running statistics (see ``proxies.tasks.module``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import datasets as D
from .char_lm import VOCAB
from .module import ModuleTask


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of [..., C] logits against [...] labels (sequences flattened)."""
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def acc(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out.argmax(-1) == y).to(torch.float32).mean()


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out - y) ** 2).mean()


def bce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(out.squeeze(-1), y.to(out.dtype))


def bin_acc(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out.squeeze(-1) > 0).to(torch.int64) == y).to(torch.float32).mean()


CLS = {"loss": ce, "acc": acc}


class Reverser(nn.Module):
    """One pre-LayerNorm attention block (bidirectional) + MLP over token and position embeddings."""

    def __init__(self, vocab: int = 12, length: int = 8, d: int = 32, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(length, d) * 0.1)
        self.ln1, self.ln2, self.lnf = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # [B, T] ids -> [B, T, vocab]
        B, T = x.shape
        h = self.tok(x) + self.pos[:T]
        q, k, v = self.qkv(self.ln1(h)).view(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v
        h = h + self.proj(att.transpose(1, 2).reshape(B, T, -1))
        h = h + self.mlp(self.ln2(h))
        return self.head(self.lnf(h))


class CharGRU(nn.Module):
    """A GRU written from linear layers (one fused input and one fused hidden projection)."""

    def __init__(self, vocab: int = len(VOCAB), d: int = 32, hidden: int = 48):
        super().__init__()
        self.hidden = hidden
        self.emb = nn.Embedding(vocab, d)
        self.wx = nn.Linear(d, 3 * hidden)
        self.wh = nn.Linear(hidden, 3 * hidden, bias=False)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # [B, T] ids -> [B, T, vocab]
        xs = self.wx(self.emb(x))                          # [B, T, 3H]
        h = xs.new_zeros(x.shape[0], self.hidden)
        outs = []
        for t in range(x.shape[1]):
            xz, xr, xn = xs[:, t].chunk(3, -1)
            hz, hr, hn = self.wh(h).chunk(3, -1)
            z, r = torch.sigmoid(xz + hz), torch.sigmoid(xr + hr)
            h = (1 - z) * torch.tanh(xn + r * hn) + z * h
            outs.append(h)
        return self.head(torch.stack(outs, 1))


def _mlp(sizes: list[int], norm: str = "none", dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers.append(nn.Linear(a, b))
        if norm == "layer":
            layers.append(nn.LayerNorm(b))
        elif norm == "batch":
            layers.append(nn.BatchNorm1d(b, track_running_stats=False))
        layers.append(nn.ReLU())
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def digits_cnn() -> ModuleTask:
    def model():
        bn = lambda c: nn.BatchNorm2d(c, track_running_stats=False)  # noqa: E731
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), bn(8), nn.ReLU(),
                             nn.Conv2d(8, 16, 3, stride=2, padding=1), bn(16), nn.ReLU(),
                             nn.Flatten(), nn.Linear(16 * 16, 10))
    return ModuleTask("digits_cnn", model, D.digits_images, ce, metrics=CLS, batch_size=48,
                      steps={"tiny": 30, "small": 250, "full": 1000}, weight_decay=1e-2,
                      schedule="warmup_cosine", blowup=5.0, salt=51,
                      description="conv net with batch norm on sklearn digits 8x8, val cross-entropy")


def seq_reverse() -> ModuleTask:
    return ModuleTask("seq_reverse", Reverser, lambda: D.reversal(12, 8, 4000, 256), ce, metrics=CLS,
                      batch_size=32, steps={"tiny": 60, "small": 400, "full": 1500}, weight_decay=1e-2,
                      schedule="warmup_cosine", blowup=5.0, salt=52,
                      description="attention block reversing 8-token sequences, val cross-entropy")


def text_rnn() -> ModuleTask:
    return ModuleTask("text_rnn", CharGRU, lambda: D.doc_windows(16), ce, batch_size=16,
                      steps={"tiny": 25, "small": 200, "full": 800}, weight_decay=0.0, blowup=5.0, salt=53,
                      description="GRU char model on stdlib docstrings, val nats/char")


def digits_ae() -> ModuleTask:
    def model():
        return nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 8), nn.Tanh(),
                             nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 64), nn.Sigmoid())
    def data():
        return {s: (x, x) for s, (x, _) in D.digits_images(flat=True).items()}
    return ModuleTask("digits_ae", model, data, mse, batch_size=32,
                      steps={"tiny": 60, "small": 400, "full": 1600}, weight_decay=0.0, blowup=5.0, salt=54,
                      description="autoencoder 64-32-8-32-64 on sklearn digits, val squared error")


def diabetes_reg() -> ModuleTask:
    return ModuleTask("diabetes_reg", lambda: _mlp([10, 64, 64, 1], norm="layer"),
                      lambda: D.tabular("diabetes", 88, 88, regression=True), mse, batch_size=16,
                      steps={"tiny": 60, "small": 400, "full": 1500}, weight_decay=1e-2, blowup=5.0, salt=55,
                      description="MLP regression with layer norm on sklearn diabetes, val squared error")


def embed_memo() -> ModuleTask:
    return ModuleTask("embed_memo", lambda: nn.Sequential(nn.Embedding(2048, 32), nn.Linear(32, 16)),
                      lambda: D.memorization(2048, 16), ce, metrics=CLS, batch_size=128,
                      steps={"tiny": 60, "small": 400, "full": 1600}, weight_decay=0.0, blowup=5.0, salt=56,
                      description="memorize random labels of 2048 ids (embedding 2048x32), training loss")


def cancer_bce() -> ModuleTask:
    return ModuleTask("cancer_bce", lambda: _mlp([30, 32, 32, 1], norm="batch"),
                      lambda: D.tabular("breast_cancer", 114, 114), bce, metrics={"loss": bce, "acc": bin_acc},
                      batch_size=32, steps={"tiny": 40, "small": 300, "full": 1200}, weight_decay=1e-2,
                      blowup=5.0, salt=57,
                      description="MLP with batch norm on sklearn breast_cancer, val binary cross-entropy")


def wine_deep() -> ModuleTask:
    return ModuleTask("wine_deep", lambda: _mlp([13] + [32] * 6 + [3], norm="layer", dropout=0.1),
                      lambda: D.tabular("wine", 36, 36), ce, metrics=CLS, batch_size=16,
                      steps={"tiny": 40, "small": 300, "full": 1200}, weight_decay=1e-2,
                      schedule="warmup_cosine", blowup=5.0, salt=58,
                      description="deep MLP (6x32) with layer norm and dropout on sklearn wine, val cross-entropy")


#: name -> (factory, family). A family groups tasks sharing data or architecture.
FAMILIES = {
    "digits_cnn": (digits_cnn, "conv"),
    "seq_reverse": (seq_reverse, "attention"),
    "text_rnn": (text_rnn, "recurrent"),
    "digits_ae": (digits_ae, "autoencoder"),
    "diabetes_reg": (diabetes_reg, "regression"),
    "embed_memo": (embed_memo, "memorization"),
    "cancer_bce": (cancer_bce, "tabular_bn"),
    "wine_deep": (wine_deep, "tabular_deep"),
}

__all__ = ["FAMILIES", "Reverser", "CharGRU", "ce", "acc", "mse", "bce", "bin_acc"] + list(FAMILIES)
