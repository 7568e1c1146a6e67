"""Stacked training: K copies of a small model trained at once under one DSL update rule.

A learning-rate sweep (and several seeds) of one candidate rule is a single
vectorized run. Every parameter is stored with a leading copy dimension ``K``
(copy ``k`` uses ``lrs[k // n_seed]`` and ``seeds[k % n_seed]``); models are
written functionally with batched ops, so one forward/backward serves all
copies. The copies' losses are summed before ``backward``: since no op mixes
copies, ``d(sum_j L_j)/d theta_k = dL_k/d theta_k`` and every copy gets its own
gradient. The rule is then applied through ``dsl.run_rule(..., batch_dims=1)``
with ``lr`` a per-copy tensor, on a few stacked blocks rather than per tensor:

* elementwise rules (no reduction or matrix primitive): every parameter of a copy
  flattened into one ``[K, P]`` block, one rule call per step;
* other rules: parameters of one shape kept in one ``[n*K, *shape]`` block with
  ``lr`` repeated ``n`` times. Reductions and matrix primitives act per leading
  index, i.e. per (tensor, copy), so the update is exactly the per-tensor one.

Held-out splits: every task reports its metric on the validation split by default;
``split="test"`` computes the metric (and the curve) on a third, held-out test split
instead, disjoint from training and validation data (each task's docstring gives the
sizes; the noisy objectives have no data, so their test metric is the objective
itself). A search selects on validation scores and must never see the test split:
it exists to report the selected rules honestly, after selection. Metric names
follow the split: ``val_loss`` on val is ``test_loss`` on test (see ``metric_key``).

Divergence: a copy whose training loss is not finite or exceeds
``blowup * initial loss``, whose parameters become non-finite (a per-copy sum
overflowing float32 counts), or whose held-out metric is not finite, is marked
diverged and frozen at zero parameters and zero state (zeros keep its share of
the shared computation finite, so it cannot poison the others). Its curve is
NaN from then on. When every copy has diverged the run stops early.

Determinism: all randomness comes from explicit seeded generators; results are
identical run to run and (measured) for 1 or 2 torch threads. A copy's curve in
a K-copy run equals its curve run alone (bit-for-bit on the network tasks here,
~1e-6 relative on the quadratic, whose [K, 50] matmul tiles differently).
"""
from __future__ import annotations

import abc
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from dsl import PRIMITIVES, Program, parse, run_rule
from dsl.program import Call, walk

#: Fidelity levels, cheap -> expensive. Only the number of training steps differs.
FIDELITIES = ("tiny", "small", "full")

#: Held-out splits a task's metric can be computed on (``split=``); "val" is the default.
SPLITS = ("val", "test")

#: Torch intra-op threads during a sweep: an integer, or "default" (unset: 1; see sweep_threads).
THREADS_ENV = "OPTFORGE_TORCH_THREADS"


@dataclass
class SweepOutcome:
    """Result of one vectorized sweep: arrays indexed [lr, seed(, curve point)]."""
    task: str
    lrs: list[float]
    seeds: list[int]
    final: np.ndarray          # [n_lr, n_seed] final held-out metric, nan where diverged
    diverged: np.ndarray       # [n_lr, n_seed] bool
    curves: np.ndarray         # [n_lr, n_seed, n_points] held-out metric, nan after divergence
    curve_steps: list[int]     # optimizer steps done at each curve point (0 = initial model)
    seconds: float
    metric_name: str = "val_loss"
    higher_is_better: bool = False
    fidelity: str = ""
    steps_run: int = 0         # optimizer steps done (< the fidelity's steps if all diverged)
    #: the held-out split the metric and curves were computed on ("val" or "test")
    split: str = "val"
    #: other held-out metrics (e.g. "val_acc") as [n_lr, n_seed, n_points] curves
    extra_curves: dict[str, np.ndarray] = field(default_factory=dict)
    #: step at which each copy diverged, -1 if it did not: [n_lr, n_seed]
    diverged_at: np.ndarray | None = None


@runtime_checkable
class RuleTask(Protocol):
    """What evaluators/ relies on (see CONTEXT contract)."""
    name: str
    metric_name: str
    higher_is_better: bool
    steps: dict[str, int]
    weight_decay: float

    def sweep(self, program: Program, lrs: Sequence[float], seeds: Sequence[int], fidelity: str,
              hyper: dict[str, float] | None = None, split: str = "val") -> SweepOutcome: ...


class StackedTask(abc.ABC):
    """Base class of every rule task: a functional model over stacked [K, ...] parameters.

    Subclasses define ``init`` (one copy's parameters for a seed), ``prepare``
    (the per-run data order of each copy), ``loss`` (per-copy training loss at a
    step) and ``evaluate`` (per-copy held-out metrics on the "val" or "test" split,
    keyed by ``metric_key``-style names). ``run_sweep`` does the rest.
    """
    name: str = ""
    description: str = ""
    metric_name: str = "val_loss"
    higher_is_better: bool = False
    steps: dict[str, int] = {}
    weight_decay: float = 0.0
    #: a copy whose monitored training loss exceeds blowup * its initial loss is diverged
    blowup: float = 10.0
    #: curve points (including the initial model and the final one)
    n_points: int = 11
    #: lr multiplier over training: "constant", "warmup_constant" or "warmup_cosine"
    schedule: str = "constant"
    warmup_frac: float = 0.05
    final_lr_frac: float = 0.1  # warmup_cosine decays to this fraction of the peak

    # -- to implement -------------------------------------------------------
    @abc.abstractmethod
    def init(self, seed: int) -> dict[str, torch.Tensor]:
        """One copy's initial float32 parameters (unstacked), a pure function of ``seed``."""

    def prepare(self, copy_seeds: list[int], steps: int) -> Any:
        """Per-run context, e.g. each copy's minibatch order (copy k follows copy_seeds[k])."""
        return None

    @abc.abstractmethod
    def loss(self, p: dict[str, torch.Tensor], ctx: Any, t: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """[K] training loss at step t (0-based) to differentiate, or (loss, monitored loss)."""

    @abc.abstractmethod
    def evaluate(self, p: dict[str, torch.Tensor], ctx: Any, split: str = "val") -> dict[str, torch.Tensor]:
        """[K] held-out metrics on ``split`` ("val" or "test"), keyed by name; must contain
        ``metric_key(split)``. Only the asked split is computed: a val run never touches test data."""

    # -- the contract ----------------------------------------------------------
    def sweep(self, program: Program | str, lrs: Sequence[float], seeds: Sequence[int], fidelity: str,
              hyper: dict[str, float] | None = None, split: str = "val") -> SweepOutcome:
        """One vectorized training run of len(lrs)*len(seeds) copies; see the module docstring.

        ``split`` picks the held-out data of the metric and curves: "val" (default) or "test".
        """
        return run_sweep(self, program, lrs, seeds, fidelity, hyper, split)

    def metric_key(self, split: str = "val") -> str:
        """Name of the metric on ``split``: ``metric_name`` on val; its ``val_`` prefix becomes
        ``test_`` on test (a metric without that prefix, e.g. an objective, keeps its name)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if split == "val" or not self.metric_name.startswith("val_"):
            return self.metric_name
        return split + self.metric_name[len("val"):]

    def lr_factors(self, steps: int) -> np.ndarray:
        """Multiplier of the swept lr at each step (float64 [steps])."""
        t = np.arange(steps, dtype=np.float64)
        if self.schedule == "constant":
            return np.ones(steps)
        warm = max(1, int(round(self.warmup_frac * steps)))
        f = np.minimum(1.0, (t + 1) / warm)
        if self.schedule == "warmup_constant":
            return f
        if self.schedule == "warmup_cosine":
            frac = np.clip((t - warm) / max(1, steps - warm), 0.0, 1.0)
            cos = self.final_lr_frac + (1 - self.final_lr_frac) * 0.5 * (1 + np.cos(np.pi * frac))
            return np.where(t < warm, f, cos)
        raise ValueError(f"task {self.name}: unknown schedule {self.schedule!r}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} steps={self.steps}>"


# -- helpers ---------------------------------------------------------------------

def sweep_threads() -> int | None:
    """Torch intra-op threads for a sweep: ``OPTFORGE_TORCH_THREADS`` (an integer, or
    ``default`` for torch's own setting); unset means 1.

    Why 1: the models are small, most ops run below torch's parallel grain size,
    and with 2 threads on 2 cores any other load (a second pool worker, another
    process) makes OpenMP's waiting threads fight for the cores: measured here, a
    digits_mlp tiny sweep took 18.5 s with 2 threads vs 0.21 s with 1 on a busy
    2-core machine. Returns None for "leave torch's setting alone".
    """
    v = os.environ.get(THREADS_ENV, "").strip()
    if not v:
        return 1
    if v.lower() == "default":
        return None
    try:
        n = int(v)
        if n < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"{THREADS_ENV}={v!r}: expected a positive integer (torch intra-op threads) "
                         "or 'default'") from None
    return n


class _Threads:
    """Use ``n`` torch threads inside the block and restore the previous count after it."""

    def __init__(self, n: int | None):
        self.n, self.prev = n, None

    def __enter__(self):
        if self.n is not None and torch.get_num_threads() != self.n:
            self.prev = torch.get_num_threads()
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if self.prev is not None:
            torch.set_num_threads(self.prev)


def curve_steps(steps: int, n_points: int) -> list[int]:
    """n_points evenly spaced steps from 0 to steps (deduplicated for tiny step counts)."""
    pts = sorted({int(round(x)) for x in np.linspace(0, steps, n_points)})
    return pts


def _check_inputs(task: StackedTask, program, lrs, seeds, fidelity, hyper, split="val"):
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} (the search selects "
                         "on 'val'; 'test' is for reporting selected rules)")
    if fidelity not in task.steps:
        raise ValueError(f"unknown fidelity {fidelity!r} for task {task.name!r}; "
                         f"use one of {list(task.steps)}")
    if isinstance(program, str):
        program = parse(program)
    if not isinstance(program, Program):
        raise TypeError(f"program must be a dsl.Program or DSL source text, got {type(program).__name__}")
    lrs = [float(x) for x in lrs]
    seeds = [int(s) for s in seeds]
    if not lrs or not seeds:
        raise ValueError("sweep needs at least one learning rate and one seed")
    bad = [x for x in lrs if not math.isfinite(x) or x < 0]
    if bad:
        raise ValueError(f"learning rates must be finite and >= 0, got {bad}")
    hyper = dict(hyper or {})
    unknown = sorted(set(hyper) - set(program.hyperparams))
    if unknown:
        raise ValueError(f"hyperparameters {unknown} are not in rule {program.name!r}; "
                         f"it has {sorted(program.hyperparams)}")
    for k, v in hyper.items():
        if not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ValueError(f"hyperparameter {k}={v!r} must be a finite number")
    return program, lrs, seeds, {k: float(v) for k, v in hyper.items()}


def elementwise_only(program: Program) -> bool:
    """True when the rule uses no reduction or matrix primitive (its update is per element)."""
    return all(PRIMITIVES[e.fn].kind == "elementwise"
               for st in program.body for e in walk(st.value) if isinstance(e, Call))


class _Blocks:
    """The stacked parameters, stored as a few leaf tensors ("blocks") the rule runs on.

    A block has a leading dim ``n*K`` laid out as ``[n, K, *inner]``: ``n`` tensors
    of one shape (shape mode), or ``n = 1`` and ``inner = [P]`` holding every
    parameter flattened side by side (flat mode, only for elementwise rules, whose
    update does not depend on tensor boundaries). Either way each leading index is
    one (tensor, copy) pair, so reductions and matrix primitives stay per tensor.
    The model sees per-name views ``[K, *shape]``; their gradients land in the blocks.
    """

    def __init__(self, params: dict[str, torch.Tensor], K: int, flat: bool):
        self.K = K
        self.flat = flat
        self.state: list[dict[str, torch.Tensor]]
        if flat:
            self.spans: list[tuple[str, int, int, tuple[int, ...]]] = []
            cols, off = [], 0
            for name, p in params.items():
                size = p[0].numel()
                cols.append(p.reshape(K, size))
                self.spans.append((name, off, size, tuple(p.shape[1:])))
                off += size
            self.tensors = [torch.cat(cols, dim=1)]
            self.n = [1]
        else:
            by_shape: dict[tuple, list[str]] = {}
            for name, p in params.items():
                by_shape.setdefault(tuple(p.shape[1:]), []).append(name)
            self.names = list(by_shape.values())
            self.tensors = [torch.stack([params[n] for n in names]).reshape(len(names) * K, *shape).contiguous()
                            for shape, names in by_shape.items()]
            self.n = [len(names) for names in self.names]
        self.state = [{} for _ in self.tensors]

    def views(self, requires_grad: bool = False) -> dict[str, torch.Tensor]:
        """name -> [K, *shape] view into the blocks.

        With ``requires_grad`` each view is its own autograd leaf (the blocks are
        not): gradients then come back per view and ``join`` assembles them with
        one copy, instead of autograd's slice/select backward, which allocates a
        zero tensor the size of the whole block for every parameter.
        """
        if self.flat:
            t = self.tensors[0]
            out = {name: t[:, off:off + size].view(self.K, *shape) for name, off, size, shape in self.spans}
        else:
            out = {}
            for t, n, names in zip(self.tensors, self.n, self.names):
                g = t.view(n, self.K, *t.shape[1:])
                for i, name in enumerate(names):
                    out[name] = g[i]
        if requires_grad:
            for v in out.values():
                v.requires_grad_(True)
        return out

    def join(self, grads: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per-view gradients -> one gradient tensor per block (the blocks' layout)."""
        if self.flat:
            return [torch.cat([grads[name].reshape(self.K, size) for name, _, size, _ in self.spans], dim=1)]
        return [torch.cat([grads[name] for name in names], dim=0) if len(names) > 1 else grads[names[0]]
                for names in self.names]


def run_sweep(task: StackedTask, program: Program | str, lrs: Sequence[float], seeds: Sequence[int],
              fidelity: str, hyper: dict[str, float] | None = None, split: str = "val") -> SweepOutcome:
    """Train K = len(lrs) * len(seeds) copies at once; see the module docstring.

    The metric and curves are computed on ``split`` ("val" or "test"); the outcome's
    ``metric_name`` is ``task.metric_key(split)``. Runs with ``sweep_threads()`` torch
    threads (restored afterwards).
    """
    program, lrs, seeds, hyper = _check_inputs(task, program, lrs, seeds, fidelity, hyper, split)
    with _Threads(sweep_threads()):
        return _train(task, program, lrs, seeds, fidelity, hyper, split)


def _train(task: StackedTask, program: Program, lrs: list[float], seeds: list[int], fidelity: str,
           hyper: dict[str, float], split: str = "val") -> SweepOutcome:
    t0 = time.perf_counter()
    steps = int(task.steps[fidelity])
    metric = task.metric_key(split)
    n_lr, n_seed = len(lrs), len(seeds)
    K = n_lr * n_seed
    copy_seeds = [seeds[k % n_seed] for k in range(K)]

    inits = [task.init(s) for s in seeds]
    params = {n: torch.stack([d[n] for d in inits]).to(torch.float32).repeat(
        n_lr, *([1] * inits[0][n].dim())) for n in inits[0]}
    blocks = _Blocks(params, K, flat=elementwise_only(program))
    del params, inits
    ctx = task.prepare(copy_seeds, steps)

    lr_base = torch.tensor([lrs[k // n_seed] for k in range(K)], dtype=torch.float32)
    factors = task.lr_factors(steps)
    wd = float(task.weight_decay)
    alive = torch.ones(K, dtype=torch.bool)
    diverged_at = np.full(K, -1, dtype=np.int64)
    pts = curve_steps(steps, task.n_points)
    point_of = {s: i for i, s in enumerate(pts)}
    curves: dict[str, np.ndarray] = {}
    bound = None
    steps_run = 0

    def kill(bad: torch.Tensor, t: int) -> None:
        diverged_at[(bad & alive).numpy()] = t
        alive.logical_and_(~bad)

    for t in range(steps + 1):
        if t in point_of:
            with torch.no_grad():
                # val: the two-argument call, so tasks written before the test split still work
                metrics = (task.evaluate(blocks.views(), ctx) if split == "val"
                           else task.evaluate(blocks.views(), ctx, split))
            if metric not in metrics:
                raise KeyError(f"task {task.name!r}: evaluate(split={split!r}) returned {sorted(metrics)}, "
                               f"not the metric {metric!r}")
            bad = ~torch.isfinite(metrics[metric].detach())
            if bool((bad & alive).any()):
                kill(bad, t)
            dead = ~alive.numpy()
            for key, val in metrics.items():
                arr = curves.setdefault(key, np.full((K, len(pts)), np.nan))
                v = val.detach().to(torch.float64).numpy().copy()
                v[dead] = np.nan
                arr[:, point_of[t]] = v
        if t == steps or not bool(alive.any()):
            break
        views = blocks.views(requires_grad=True)
        out = task.loss(views, ctx, t)
        loss, monitor = out if isinstance(out, tuple) else (out, out)
        leaves = list(views.values())
        grads = torch.autograd.grad(loss.sum(), leaves, allow_unused=True)
        grads = blocks.join({n: torch.zeros_like(v) if g is None else g for (n, v), g in zip(views.items(), grads)})
        with torch.no_grad():
            mon = monitor.detach()
            if bound is None:
                bound = task.blowup * mon.abs()
            all_alive = bool(alive.all())
            lr_t = lr_base * float(factors[t])
            if not all_alive:
                lr_t = lr_t * alive
            new_tensors = []
            total = torch.zeros(K, dtype=torch.float32)
            for i, (w, g) in enumerate(zip(blocks.tensors, grads)):
                n = blocks.n[i]
                new_w, blocks.state[i] = run_rule(program, w, g, blocks.state[i],
                                                  lr=lr_t.repeat(n) if n > 1 else lr_t, wd=wd,
                                                  step=t + 1, hyper=hyper, batch_dims=1)
                total += new_w.reshape(n, K, -1).sum(dim=(0, 2))
                new_tensors.append(new_w)
            bad = ~torch.isfinite(mon) | (mon > bound) | ~torch.isfinite(total)
            if bool((bad & alive).any()):
                kill(bad, t + 1)
                all_alive = False
            if not all_alive:
                for i, w in enumerate(new_tensors):
                    n = blocks.n[i]
                    mask = alive.repeat(n).view(n * K, *([1] * (w.dim() - 1)))
                    zero = torch.zeros((), dtype=w.dtype)
                    new_tensors[i] = torch.where(mask, w, zero)
                    blocks.state[i] = {k: torch.where(mask, v, zero) for k, v in blocks.state[i].items()}
            blocks.tensors = [w.contiguous() for w in new_tensors]
        steps_run = t + 1

    def shaped(a: np.ndarray) -> np.ndarray:
        return a.reshape(n_lr, n_seed, *a.shape[1:])

    metric_curves = shaped(curves.pop(metric))
    diverged = shaped(~alive.numpy())
    final = metric_curves[:, :, -1].copy()
    final[diverged] = np.nan
    return SweepOutcome(
        task=task.name, lrs=lrs, seeds=seeds, final=final, diverged=diverged, curves=metric_curves,
        curve_steps=pts, seconds=time.perf_counter() - t0, metric_name=metric,
        higher_is_better=task.higher_is_better, fidelity=fidelity, steps_run=steps_run,
        extra_curves={k: shaped(v) for k, v in curves.items()}, diverged_at=shaped(diverged_at), split=split)


# -- stacked building blocks (all ops act per copy along dim 0) --------------------

def gen(seed: int, salt: int) -> torch.Generator:
    """A torch Generator for (seed, salt): tasks salt their streams so they do not share numbers."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + salt) % (2**63 - 1))


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
