"""Offline data for the generic task families: scikit-learn's bundled datasets, generated
sequences, and prose from the docstrings of Python's own standard library (nothing downloaded).

Every builder returns ``{"train": (x, y), "val": (x, y), "test": (x, y)}`` from one
fixed seeded permutation, so the splits are disjoint and identical in every process.
Tabular features are standardized with the training split's mean and std.
"""
from __future__ import annotations

import ast

import numpy as np
import torch

from .char_lm import encode, stdlib_path, stdlib_source
from .digits import digits_data

Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]
_CACHE: dict[tuple, Splits] = {}


def _cached(key: tuple, build) -> Splits:
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def _split(x: np.ndarray, y: np.ndarray, n_val: int, n_test: int, seed: int = 0) -> dict[str, tuple]:
    perm = np.random.RandomState(seed).permutation(len(x))
    idx = {"val": perm[:n_val], "test": perm[n_val:n_val + n_test], "train": perm[n_val + n_test:]}
    return {s: (x[i], y[i]) for s, i in idx.items()}


def tabular(name: str, n_val: int, n_test: int, regression: bool = False) -> Splits:
    """A scikit-learn bundled dataset (``load_<name>``): float32 standardized features; int64 labels,
    or for ``regression`` a float32 [N, 1] target standardized by the training split."""
    def build() -> Splits:
        from sklearn import datasets  # imported when data is first built: ~1.4 s to import (see digits.py)
        d = getattr(datasets, f"load_{name}")()
        x = d.data.astype(np.float64)
        y = d.target.astype(np.float64 if regression else np.int64)
        parts = _split(x, y, n_val, n_test)
        mu, sd = parts["train"][0].mean(0), parts["train"][0].std(0) + 1e-8
        out = {}
        ymu, ysd = (parts["train"][1].mean(), parts["train"][1].std()) if regression else (0.0, 1.0)
        for s, (xs, ys) in parts.items():
            xt = torch.from_numpy(((xs - mu) / sd).astype(np.float32))
            yt = (torch.from_numpy(((ys - ymu) / ysd).astype(np.float32)).unsqueeze(1) if regression
                  else torch.from_numpy(ys))
            out[s] = (xt, yt)
        return out
    return _cached(("tabular", name, n_val, n_test, regression), build)


def digits_images(flat: bool = False) -> Splits:
    """The digits task's splits (``proxies.tasks.digits``), as [N, 1, 8, 8] images or [N, 64] rows."""
    d = digits_data()
    shape = (-1, 64) if flat else (-1, 1, 8, 8)
    return {s: (d[f"x_{s}"].reshape(shape), d[f"y_{s}"]) for s in ("train", "val", "test")}


def reversal(vocab: int, length: int, n_train: int, n_held: int) -> Splits:
    """Random token sequences [N, length] (ids 0..vocab-1) and their reversals as targets."""
    def build() -> Splits:
        rs = np.random.RandomState(1234)
        x = rs.randint(0, vocab, size=(n_train + 2 * n_held, length)).astype(np.int64)
        parts = _split(x, x[:, ::-1].copy(), n_held, n_held)
        return {s: (torch.from_numpy(a), torch.from_numpy(np.ascontiguousarray(b))) for s, (a, b) in parts.items()}
    return _cached(("reversal", vocab, length, n_train, n_held), build)


def memorization(n: int, classes: int) -> Splits:
    """``n`` ids with random labels: nothing to generalize, only to memorize. The val and test
    "splits" are the training set itself (the metric is how far training got)."""
    def build() -> Splits:
        rs = np.random.RandomState(4321)
        x = torch.arange(n, dtype=torch.int64)
        y = torch.from_numpy(rs.randint(0, classes, size=n).astype(np.int64))
        return {"train": (x, y), "val": (x, y), "test": (x, y)}
    return _cached(("memorization", n, classes), build)


DOC_TRAIN = ("collections/__init__", "inspect", "pathlib", "typing", "threading", "subprocess", "logging/__init__",
             "zipfile", "tarfile", "email/message", "json/__init__", "decimal", "_pydecimal")
DOC_VAL = ("os", "shutil", "socket")
DOC_TEST = ("datetime", "ipaddress", "optparse")


def _docstrings(module: str) -> str:
    corpus, needs = "docstring corpus", "the text tasks need"
    try:
        tree = ast.parse(stdlib_source(module, corpus, needs))
    except SyntaxError as e:
        raise RuntimeError(f"{corpus}: cannot read the stdlib source {stdlib_path(module)} ({e}); {needs} "
                           "a Python installation with its .py standard library sources") from e
    docs = [ast.get_docstring(n) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    return "\n\n".join(d for d in docs if d)


def doc_windows(length: int) -> Splits:
    """Prose (stdlib docstrings; train, val and test modules disjoint) cut into non-overlapping
    character windows: x = ids [N, length], y = the next character at each position."""
    def build() -> Splits:
        out = {}
        for split, mods in (("train", DOC_TRAIN), ("val", DOC_VAL), ("test", DOC_TEST)):
            ids = encode("\n\n".join(_docstrings(m) for m in mods))
            n = (len(ids) - 1) // length
            w = torch.from_numpy(ids[: n * length + 1])
            x = w[:-1].reshape(n, length)
            y = w[1:].reshape(n, length)
            if split != "train":  # a fixed evenly spaced subset keeps evaluation cheap
                keep = torch.from_numpy(np.linspace(0, n - 1, min(n, 256)).astype(np.int64))
                x, y = x[keep], y[keep]
            out[split] = (x.contiguous(), y.contiguous())
        return out
    return _cached(("docs", length), build)


__all__ = ["tabular", "digits_images", "reversal", "memorization", "doc_windows", "DOC_TRAIN", "DOC_VAL",
           "DOC_TEST"]
