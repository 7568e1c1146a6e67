"""A small character-level transformer language model on Python's own standard-library sources.

Corpus: a fixed selection of stdlib modules read from ``sysconfig`` paths (ships
with every Python, nothing downloaded); two other modules are the validation
text (``textwrap``, ``shlex``), so validation measures generalization to unseen
files, and three more (``cmd``, ``graphlib``, ``getopt``, about the same amount of
text) are the held-out test text (``split="test"``: ``test_loss``; the search
never sees it). The three sets of modules are disjoint. Vocabulary: the 95
printable ASCII characters, newline, and one "other" symbol (tabs become spaces).
The corpus depends on the Python version's stdlib (here 3.11); within one
installation it is fixed.

Model (pre-LayerNorm GPT, no dropout, no biases in linear layers): learned token
and position embeddings, ``n_layer`` blocks of causal multi-head attention and a
4x GELU MLP, final LayerNorm, untied output head. Training on random windows
(seeded per copy); metric: mean validation cross-entropy in nats per character
over 48 fixed windows evenly spaced over the validation (or test) text.
"""
from __future__ import annotations

import math
import os
import sysconfig

import numpy as np
import torch
import torch.nn.functional as F

from .core import StackedTask, cross_entropy, gen, layer_norm, linear, normal

TRAIN_MODULES = ("difflib", "fractions", "statistics", "functools", "contextlib", "dataclasses", "enum",
                 "argparse", "random", "heapq", "calendar", "tokenize", "queue", "csv", "pprint")
VAL_MODULES = ("textwrap", "shlex")
TEST_MODULES = ("cmd", "graphlib", "getopt")
VOCAB = [chr(c) for c in range(32, 127)] + ["\n", "\x00"]  # "\x00": any other character
_INDEX = {c: i for i, c in enumerate(VOCAB)}
_DATA: dict[str, torch.Tensor] = {}


def encode(text: str) -> np.ndarray:
    other = _INDEX["\x00"]
    text = text.replace("\t", "    ")
    return np.fromiter((_INDEX.get(c, other) for c in text), dtype=np.int64, count=len(text))


def stdlib_path(module: str) -> str:
    """The source file of the standard-library module ``module`` ("json/__init__": a package's)."""
    return os.path.join(sysconfig.get_paths()["stdlib"], *module.split("/")) + ".py"


def stdlib_source(module: str, corpus: str = "char_lm corpus", needs: str = "this task needs") -> str:
    """The source text of the standard-library module ``module``. Unreadable: a RuntimeError
    "``corpus``: cannot read the stdlib source PATH (why); ``needs`` a Python installation with
    its .py standard library sources"."""
    path = stdlib_path(module)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise RuntimeError(f"{corpus}: cannot read the stdlib source {path} ({e}); {needs} "
                           "a Python installation with its .py standard library sources") from e


def _read(modules: tuple[str, ...]) -> str:
    return "\n".join(stdlib_source(m) for m in modules)


def corpus() -> dict[str, torch.Tensor]:
    """{'train': int64 [N], 'val': int64 [M], 'test': int64 [T]} character ids (cached in-process)."""
    if not _DATA:
        _DATA["train"] = torch.from_numpy(encode(_read(TRAIN_MODULES)))
        _DATA["val"] = torch.from_numpy(encode(_read(VAL_MODULES)))
        _DATA["test"] = torch.from_numpy(encode(_read(TEST_MODULES)))
    return _DATA


class CharLM(StackedTask):
    name = "char_lm"
    description = "char-level transformer LM (2 layers, d=32, ctx 32) on stdlib sources, val nats/char"
    metric_name = "val_loss"
    steps = {"tiny": 30, "small": 200, "full": 800}
    weight_decay = 1e-2
    schedule = "warmup_cosine"
    blowup = 5.0   # the initial loss is ~log(97) = 4.6: a copy above ~23 nats/char has blown up
    d_model = 32
    n_layer = 2
    n_head = 2
    ctx = 32
    batch = 12
    n_val_windows = 48
    salt = 31

    def __init__(self):
        self.data = corpus()
        n = self.ctx + 1
        self.windows = {}
        for split in ("val", "test"):
            text = self.data[split]
            starts = np.linspace(0, len(text) - n, self.n_val_windows).astype(np.int64)
            self.windows[split] = text[torch.from_numpy(starts)[:, None] + torch.arange(n)]  # [W, ctx+1]
        self.val_windows = self.windows["val"]
        self.offsets = torch.arange(n)

    def init(self, seed):
        g = gen(seed, self.salt)
        d, V, L = self.d_model, len(VOCAB), self.n_layer
        s = 1 / math.sqrt(d)
        p = {"tok": normal(g, V, d, std=s * 4), "pos": normal(g, self.ctx, d, std=s)}
        for i in range(L):
            p[f"b{i}.ln1_g"], p[f"b{i}.ln1_b"] = torch.ones(d), torch.zeros(d)
            p[f"b{i}.qkv"] = normal(g, 3 * d, d, std=s)
            p[f"b{i}.proj"] = normal(g, d, d, std=s / math.sqrt(2 * L))
            p[f"b{i}.ln2_g"], p[f"b{i}.ln2_b"] = torch.ones(d), torch.zeros(d)
            p[f"b{i}.fc"] = normal(g, 4 * d, d, std=s)
            p[f"b{i}.fc2"] = normal(g, d, 4 * d, std=1 / math.sqrt(4 * d) / math.sqrt(2 * L))
        p["lnf_g"], p["lnf_b"] = torch.ones(d), torch.zeros(d)
        p["head"] = normal(g, V, d, std=s)
        return p

    def logits(self, p, x):
        """x [K, B, T] ids -> [K, B*T, V] logits."""
        K, B, T = x.shape
        d, H = self.d_model, self.n_head
        V = p["tok"].shape[1]
        rows = (x.reshape(K, B * T) + torch.arange(K).unsqueeze(1) * V).reshape(-1)     # row of copy k's table
        tok = p["tok"].reshape(K * V, d).index_select(0, rows).view(K, B, T, d)
        h = (tok + p["pos"][:, None, :T]).view(K, B * T, d)
        for i in range(self.n_layer):
            a = layer_norm(h, p[f"b{i}.ln1_g"], p[f"b{i}.ln1_b"])
            q, k, v = linear(a, p[f"b{i}.qkv"]).view(K * B, T, 3, H, d // H).permute(2, 0, 3, 1, 4)
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)       # [K*B, H, T, dh]
            h = h + linear(att.transpose(1, 2).reshape(K, B * T, d), p[f"b{i}.proj"])
            a = layer_norm(h, p[f"b{i}.ln2_g"], p[f"b{i}.ln2_b"])
            h = h + linear(F.gelu(linear(a, p[f"b{i}.fc"])), p[f"b{i}.fc2"])
        return linear(layer_norm(h, p["lnf_g"], p["lnf_b"]), p["head"])

    def prepare(self, copy_seeds, steps):
        n = len(self.data["train"]) - self.ctx - 1
        per_seed = {}
        for s in set(copy_seeds):
            rs = np.random.RandomState((s * 7919 + self.salt) % (2**32))
            per_seed[s] = rs.randint(0, n, size=(steps, self.batch))
        return torch.from_numpy(np.stack([per_seed[s] for s in copy_seeds], axis=1))  # [steps, K, B]

    def loss(self, p, ctx, t):
        win = self.data["train"][ctx[t][..., None] + self.offsets]                  # [K, B, ctx+1]
        K = win.shape[0]
        return cross_entropy(self.logits(p, win[..., :-1]), win[..., 1:].reshape(K, -1))

    def evaluate(self, p, ctx, split="val"):
        K = next(iter(p.values())).shape[0]
        w = self.windows[split]
        win = w.expand(K, *w.shape)
        return {f"{split}_loss": cross_entropy(self.logits(p, win[..., :-1]), win[..., 1:].reshape(K, -1))}
