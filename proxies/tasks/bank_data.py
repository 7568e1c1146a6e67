"""Data of the sampled task bank (``proxies.tasks.bank``): generated sets and scikit-learn's bundled ones.

Every builder is a pure function of its arguments (``seed`` included) and returns
``{"train": (x, y), "val": (x, y), "test": (x, y)}``: disjoint splits of one seeded draw, features
standardized with the training split's statistics. Built sets are cached in-process.

Generated sets (sizes: ``N_TRAIN`` / ``N_HELD`` / ``N_HELD``):

* ``gauss``: ``c`` classes in ``d`` dimensions, each class a mixture of two Gaussian clusters whose
  centres lie ``sep`` apart on average, a fraction ``noise`` of labels flipped at random;
* ``teacher``: regression targets of a random one-hidden-layer tanh network on ``d`` Gaussian
  inputs, plus Gaussian noise of std ``noise`` times the target's std;
* ``lowrank``: ``d``-dimensional points on a random rank-``r`` subspace plus noise of std ``noise``;
* ``protos``: 8x8 images of ``c`` random smooth prototypes, shifted by up to one pixel, plus pixel
  noise of std ``noise``;
* sequences (``reverse`` / ``sort`` / ``shift``): random token strings of length ``length`` over
  ``v`` ids and their reversal, sorted order, or the string delayed by one position;
* ``memo``: ``n`` ids with random labels (nothing to generalize: val and test are the training set).
"""
from __future__ import annotations

import numpy as np
import torch

Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]
N_TRAIN, N_HELD = 1024, 256
KEPT = 32
_CACHE: dict[tuple, Splits] = {}

#: scikit-learn classification sets: name -> (load_<name>, held-out size per split)
SKLEARN_CLASSIFICATION = {"digits": ("digits", 360), "wine": ("wine", 36), "cancer": ("breast_cancer", 114),
                          "iris": ("iris", 30)}


def _cached(key: tuple, build) -> Splits:
    """Built once per process; only the most recent ``KEPT`` sets stay (a search draws new ones
    every generation, and each task also keeps its own data)."""
    if key not in _CACHE:
        _CACHE[key] = build()
        while len(_CACHE) > KEPT:
            _CACHE.pop(next(iter(_CACHE)))
    return _CACHE[key]


def _standardize(x: np.ndarray, y: np.ndarray, regression: bool, n_held: int, seed: int) -> Splits:
    perm = np.random.RandomState(seed).permutation(len(x))
    idx = {"val": perm[:n_held], "test": perm[n_held:2 * n_held], "train": perm[2 * n_held:]}
    tr = idx["train"]
    mu, sd = x[tr].mean(0), x[tr].std(0)
    # a feature constant on the training split keeps its scale: dividing by ~0 turned a digits pixel that
    # is 0 in every training image and 1 in one held-out image into 1e8, which batch statistics at
    # evaluation then spread over the whole held-out batch (every model at chance)
    sd = np.where(sd < 1e-6, 1.0, sd)
    ymu, ysd = (y[tr].mean(), y[tr].std() + 1e-8) if regression else (0.0, 1.0)
    out = {}
    for s, i in idx.items():
        xs = torch.from_numpy(((x[i] - mu) / sd).astype(np.float32))
        ys = (torch.from_numpy(((y[i] - ymu) / ysd).astype(np.float32)).reshape(-1, 1) if regression
              else torch.from_numpy(y[i].astype(np.int64)))
        out[s] = (xs, ys)
    return out


def gauss(d: int, c: int, sep: float, noise: float, seed: int) -> Splits:
    def build() -> Splits:
        rs = np.random.RandomState(seed)
        n = N_TRAIN + 2 * N_HELD
        centres = rs.randn(c, 2, d) * sep / np.sqrt(2.0)
        y = rs.randint(0, c, size=n)
        x = centres[y, rs.randint(0, 2, size=n)] + rs.randn(n, d)
        flip = rs.rand(n) < noise
        y = np.where(flip, rs.randint(0, c, size=n), y)
        return _standardize(x, y, False, N_HELD, seed + 1)
    return _cached(("gauss", d, c, sep, noise, seed), build)


def teacher(d: int, noise: float, seed: int) -> Splits:
    def build() -> Splits:
        rs = np.random.RandomState(seed)
        n = N_TRAIN + 2 * N_HELD
        x = rs.randn(n, d)
        w1, w2 = rs.randn(d, 4 * d) / np.sqrt(d), rs.randn(4 * d) / np.sqrt(4 * d)
        y = np.tanh(x @ w1) @ w2
        y = y + noise * y.std() * rs.randn(n)
        return _standardize(x, y, True, N_HELD, seed + 1)
    return _cached(("teacher", d, noise, seed), build)


def lowrank(d: int, r: int, noise: float, seed: int) -> Splits:
    def build() -> Splits:
        rs = np.random.RandomState(seed)
        n = N_TRAIN + 2 * N_HELD
        x = rs.randn(n, r) @ rs.randn(r, d) / np.sqrt(r) + noise * rs.randn(n, d)
        parts = _standardize(x, np.zeros(n), False, N_HELD, seed + 1)
        return {s: (xs, xs) for s, (xs, _) in parts.items()}
    return _cached(("lowrank", d, r, noise, seed), build)


def protos(c: int, noise: float, seed: int) -> Splits:
    def build() -> Splits:
        rs = np.random.RandomState(seed)
        n = N_TRAIN + 2 * N_HELD
        base = rs.randn(c, 10, 10)
        smooth = (base + np.roll(base, 1, 1) + np.roll(base, 1, 2) + np.roll(base, (1, 1), (1, 2))) / 2.0
        y = rs.randint(0, c, size=n)
        dy, dx = rs.randint(0, 3, size=n), rs.randint(0, 3, size=n)
        x = np.stack([smooth[y[i], dy[i]:dy[i] + 8, dx[i]:dx[i] + 8] for i in range(n)])
        x = x + noise * rs.randn(n, 8, 8)
        parts = _standardize(x.reshape(n, 64), y, False, N_HELD, seed + 1)
        return {s: (xs.reshape(-1, 1, 8, 8), ys) for s, (xs, ys) in parts.items()}
    return _cached(("protos", c, noise, seed), build)


def sequences(task: str, v: int, length: int, seed: int) -> Splits:
    def build() -> Splits:
        rs = np.random.RandomState(seed)
        n = 2 * N_TRAIN + 2 * N_HELD
        x = rs.randint(0, v, size=(n, length)).astype(np.int64)
        if task == "reverse":
            y = x[:, ::-1]
        elif task == "sort":
            y = np.sort(x, axis=1)
        elif task == "shift":
            y = np.concatenate([np.zeros((n, 1), dtype=np.int64), x[:, :-1]], axis=1)
        else:
            raise ValueError(f"unknown sequence task {task!r}; use reverse, sort or shift")
        perm = rs.permutation(n)
        idx = {"val": perm[:N_HELD], "test": perm[N_HELD:2 * N_HELD], "train": perm[2 * N_HELD:]}
        return {s: (torch.from_numpy(x[i].copy()), torch.from_numpy(np.ascontiguousarray(y[i])))
                for s, i in idx.items()}
    return _cached(("seq", task, v, length, seed), build)


def memo(n: int, c: int, seed: int) -> Splits:
    def build() -> Splits:
        rs = np.random.RandomState(seed)
        x = torch.arange(n, dtype=torch.int64)
        y = torch.from_numpy(rs.randint(0, c, size=n).astype(np.int64))
        return {"train": (x, y), "val": (x, y), "test": (x, y)}
    return _cached(("memo", n, c, seed), build)


def sklearn_classification(name: str, seed: int, flat: bool = True) -> Splits:
    """A bundled classification set (a key of ``SKLEARN_CLASSIFICATION``), split by ``seed``; digits
    as [N, 64] rows, or [N, 1, 8, 8] images when not ``flat``."""
    loader, n_held = SKLEARN_CLASSIFICATION[name]

    def build() -> Splits:
        from sklearn import datasets  # imported when data is first built: ~1.4 s (see proxies.tasks.digits)
        d = getattr(datasets, f"load_{loader}")()
        parts = _standardize(d.data.astype(np.float64), d.target.astype(np.int64), False, n_held, seed)
        if flat:
            return parts
        return {s: (xs.reshape(-1, 1, 8, 8), ys) for s, (xs, ys) in parts.items()}
    return _cached(("sk", name, seed, flat), build)


def diabetes(seed: int) -> Splits:
    def build() -> Splits:
        from sklearn import datasets  # imported when data is first built (see sklearn_classification)
        d = datasets.load_diabetes()
        return _standardize(d.data.astype(np.float64), d.target.astype(np.float64), True, 88, seed)
    return _cached(("diabetes", seed), build)


def digits_flat_autoencode(seed: int) -> Splits:
    """Digits rows as both input and target (the autoencoder family's bundled set)."""
    return {s: (x, x) for s, (x, _) in sklearn_classification("digits", seed).items()}


__all__ = ["N_TRAIN", "N_HELD", "SKLEARN_CLASSIFICATION", "gauss", "teacher", "lowrank", "protos", "sequences",
           "memo", "sklearn_classification", "diabetes", "digits_flat_autoencode"]
