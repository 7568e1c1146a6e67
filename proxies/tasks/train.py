"""The stacked training loop behind every ``StackedTask.sweep`` (see ``proxies.tasks.core``).

Besides the lr x seed grid, a sweep can tune weight decay in the same run
(``wds``: grid point i trains with ``lrs[i]`` and ``wds[i]``, a per-copy wd next
to the per-copy lr) and prune the grid by successive halving (``rungs``: at a
rung, the best ``keep`` grid points by seed-mean held-out metric go on and the
other copies are dropped from the stacked tensors, so later steps cost less).
A rung acts at the curve point nearest its fraction of the steps, where the
metric is computed anyway; the kept copies' data order comes from
``task.prepare`` on their seeds, which every task computes per seed. Without
``wds`` and ``rungs`` the run is exactly the plain lr sweep.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dsl import ROLE_INPUTS, Program, global_norm_inputs, parse, per_element, run_rule

from .outcome import SPLITS, THREADS_ENV, Rung, SweepOutcome

#: a ``proxies.tasks.core.StackedTask``; not imported, since core imports this module to run its
#: sweeps and the dependency must point one way
StackedTask = Any


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


class TorchThreads:
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


def uses_roles(program: Program) -> bool:
    """True when the rule reads a parameter's role (is_matrix, is_embedding, is_head, is_vector)."""
    return any(a in ROLE_INPUTS for a in program.arg_names)


def _group_norms(inputs: Sequence[str], blocks: _Blocks, grads: Sequence[torch.Tensor], K: int,
                 ) -> dict[str, torch.Tensor]:
    """``global_norm(x)`` per copy: the L2 norm over all of a copy's parameters (a model's param
    group), not over one block, for each input the rule reads it of ("g", "w"); shape ``(K,)``."""
    out = {}
    for nm in inputs:
        xs = grads if nm == "g" else blocks.tensors
        sq = sum(x.detach().double().reshape(blocks.n[i], K, -1).square().sum(dim=(0, 2)) for i, x in enumerate(xs))
        out[nm] = sq.sqrt()
    return out


class _Blocks:
    """The stacked parameters, stored as a few leaf tensors ("blocks") the rule runs on.

    A block has a leading dim ``n*K`` laid out as ``[n, K, *inner]``: ``n`` tensors
    of one shape (shape mode), or ``n = 1`` and ``inner = [P]`` holding every
    parameter flattened side by side (flat mode, only for elementwise rules, whose
    update does not depend on tensor boundaries). Either way each leading index is
    one (tensor, copy) pair, so reductions and matrix primitives stay per tensor.
    The model sees per-name views ``[K, *shape]``; their gradients land in the blocks.
    With ``roles`` (name -> matrix / embedding / head / vector, for rules that read roles) a block
    holds tensors of one shape *and* one role, and ``self.roles[i]`` is block i's role.
    """

    def __init__(self, params: dict[str, torch.Tensor], K: int, flat: bool,
                 roles: dict[str, str] | None = None):
        self.K = K
        self.flat = flat
        self.roles: list[str | None] = [None]
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
                by_shape.setdefault((tuple(p.shape[1:]), (roles or {}).get(name)), []).append(name)
            self.names = list(by_shape.values())
            self.roles = [role for _, role in by_shape]
            self.tensors = [torch.stack([params[n] for n in names]).reshape(len(names) * K, *shape).contiguous()
                            for (shape, _), names in by_shape.items()]
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

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the copies at positions ``keep`` (int64, ascending), parameters and state alike."""
        K2 = int(keep.numel())

        def pick(t: torch.Tensor, n: int) -> torch.Tensor:
            if t.dim() == 0 or t.shape[0] != n * self.K:
                return t                       # not per (tensor, copy): shared
            return t.view(n, self.K, *t.shape[1:]).index_select(1, keep).reshape(n * K2, *t.shape[1:])

        for i, t in enumerate(self.tensors):
            n = self.n[i]
            self.tensors[i] = pick(t, n).contiguous()
            self.state[i] = {k: pick(v, n) for k, v in self.state[i].items()}
        self.K = K2


def run_sweep(task: StackedTask, program: Program | str, lrs: Sequence[float], seeds: Sequence[int],
              fidelity: str, hyper: dict[str, float] | None = None, split: str = "val",
              wds: Sequence[float] | None = None, rungs: Sequence[Rung] | None = None) -> SweepOutcome:
    """Train K = len(lrs) * len(seeds) copies at once; see the module docstrings.

    The metric and curves are computed on ``split`` ("val" or "test"); the outcome's
    ``metric_name`` is ``task.metric_key(split)``. ``wds`` (one per lr: grid points are
    (lrs[i], wds[i]) pairs) overrides the task's ``weight_decay`` per copy; ``rungs``
    prune the grid by successive halving. Runs with ``sweep_threads()`` torch threads
    (restored afterwards).
    """
    program, lrs, seeds, hyper = _check_inputs(task, program, lrs, seeds, fidelity, hyper, split)
    wd_list = _check_wds(wds, lrs)
    rung_list = _check_rungs(rungs)
    with TorchThreads(sweep_threads()):
        return _train(task, program, lrs, seeds, fidelity, hyper, split, wd_list, rung_list)


def _check_wds(wds, lrs: list[float]) -> list[float] | None:
    if wds is None:
        return None
    wds = [float(x) for x in wds]
    if len(wds) != len(lrs):
        raise ValueError(f"got {len(wds)} weight decays for {len(lrs)} learning rates: a grid point is an "
                         "(lr, wd) pair, give one wd per lr (repeat values for a product grid)")
    bad = [x for x in wds if not math.isfinite(x) or x < 0]
    if bad:
        raise ValueError(f"weight decays must be finite and >= 0, got {bad}")
    return wds


def _check_rungs(rungs) -> list[Rung]:
    out = []
    for r in rungs or ():
        r = r if isinstance(r, Rung) else Rung(*r)
        if not 0 < r.frac < 1 or r.keep < 1:
            raise ValueError(f"a successive-halving rung needs 0 < frac < 1 and keep >= 1, got {r}")
        if out and (r.frac <= out[-1].frac or r.keep > out[-1].keep):
            raise ValueError(f"rungs must have increasing fractions and non-increasing keep counts, got "
                             f"{list(rungs)}")
        out.append(r)
    return out


def _rung_steps(rungs: list[Rung], pts: list[int], steps: int) -> dict[int, int]:
    """{curve step: keep} for each rung, at the curve point nearest its fraction (never 0 or the end)."""
    inner = [p for p in pts if 0 < p < steps]
    out: dict[int, int] = {}
    for r in rungs:
        if inner:
            at = min(inner, key=lambda p: (abs(p - r.frac * steps), p))
            out[at] = min(r.keep, out.get(at, r.keep))
    return out


def _kept_copies(m: np.ndarray, alive: np.ndarray, point: np.ndarray, n_seed: int, keep: int,
                 higher_is_better: bool) -> np.ndarray:
    """Bool mask over the stacked copies: those of the ``keep`` best grid points by seed-mean metric
    ``m``. A point with a diverged seed or a non-finite metric is never kept (it is not usable)."""
    ok = alive & np.isfinite(m)
    scored = []
    for p in np.unique(point):
        js = np.flatnonzero(point == p)
        if len(js) == n_seed and ok[js].all():
            mean = float(m[js].mean())
            scored.append((-mean if higher_is_better else mean, int(p)))
    kept = {p for _, p in sorted(scored)[:keep]}
    return np.array([int(p) in kept for p in point], dtype=bool)


def _freeze(v: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """``v`` (laid out per (tensor, copy) along dim 0) with the dead copies' entries zeroed. State may
    have other trailing dims than its parameter (an m x m preconditioner); a tensor not laid out per
    (tensor, copy) is shared and returned as it is."""
    if v.dim() == 0 or v.shape[0] != alive.numel():
        return v
    return torch.where(alive.view(-1, *([1] * (v.dim() - 1))), v, torch.zeros((), dtype=v.dtype))


def _train(task: StackedTask, program: Program, lrs: list[float], seeds: list[int], fidelity: str,
           hyper: dict[str, float], split: str = "val", wds: list[float] | None = None,
           rungs: list[Rung] | None = None) -> SweepOutcome:
    t0 = time.perf_counter()
    steps = int(task.steps[fidelity])
    metric = task.metric_key(split)
    n_lr, n_seed = len(lrs), len(seeds)
    K = n_lr * n_seed
    copy_seeds = [seeds[k % n_seed] for k in range(K)]

    inits = [task.init(s) for s in seeds]
    params = {n: torch.stack([d[n] for d in inits]).to(torch.float32).repeat(
        n_lr, *([1] * inits[0][n].dim())) for n in inits[0]}
    # tasks that know their parameters' roles (task.param_roles()) hand them to rules that read roles;
    # otherwise a rule sees roles by dimension (2-D and larger: matrix)
    roles = task.param_roles() if uses_roles(program) and hasattr(task, "param_roles") else None
    # per_element: no reduction, matrix primitive, role input or shaped state (those need each tensor whole)
    blocks = _Blocks(params, K, flat=per_element(program) and roles is None, roles=roles)
    norm_inputs = global_norm_inputs(program)
    del params, inits
    ctx = task.prepare(copy_seeds, steps)

    lr_base = torch.tensor([lrs[k // n_seed] for k in range(K)], dtype=torch.float32)
    factors = task.lr_factors(steps)
    wd: float | torch.Tensor = (float(task.weight_decay) if wds is None else
                                torch.tensor([wds[k // n_seed] for k in range(K)], dtype=torch.float32))
    alive = torch.ones(K, dtype=torch.bool)          # per stacked copy
    active = np.arange(K)                            # stacked copy -> its index in the full grid
    diverged_at = np.full(K, -1, dtype=np.int64)     # per grid copy, like pruned
    pruned = np.zeros(K, dtype=bool)
    pts = curve_steps(steps, task.n_points)
    point_of = {s: i for i, s in enumerate(pts)}
    rung_at = _rung_steps(list(rungs or ()), pts, steps)
    curves: dict[str, np.ndarray] = {}
    bound = None
    steps_run = copy_steps = 0

    def kill(bad: torch.Tensor, t: int) -> None:
        diverged_at[active[(bad & alive).numpy()]] = t
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
                arr[active, point_of[t]] = v
            if t in rung_at and bool(alive.any()):
                m = metrics[metric].detach().to(torch.float64).numpy()
                sel = _kept_copies(m, alive.numpy(), active // n_seed, n_seed, rung_at[t],
                                   bool(task.higher_is_better))
                if not sel.any():             # no usable point is left: nothing worth training on
                    pruned[active[alive.numpy()]] = True
                    break
                if not sel.all():
                    pruned[active[~sel & alive.numpy()]] = True
                    keep = torch.from_numpy(np.flatnonzero(sel))
                    blocks.select(keep)
                    lr_base, alive = lr_base[keep], alive[keep]
                    if isinstance(wd, torch.Tensor):
                        wd = wd[keep]
                    if bound is not None:
                        bound = bound[keep]
                    active = active[sel]
                    ctx = task.prepare([copy_seeds[k] for k in active], steps)
        if t == steps or not bool(alive.any()):
            break
        Kt = blocks.K
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
            total = torch.zeros(Kt, dtype=torch.float32)
            norms = _group_norms(norm_inputs, blocks, grads, Kt)
            for i, (w, g) in enumerate(zip(blocks.tensors, grads)):
                n = blocks.n[i]
                wd_i = wd.repeat(n) if isinstance(wd, torch.Tensor) and n > 1 else wd
                new_w, blocks.state[i] = run_rule(program, w, g, blocks.state[i],
                                                  lr=lr_t.repeat(n) if n > 1 else lr_t, wd=wd_i,
                                                  step=t + 1, hyper=hyper, batch_dims=1,
                                                  role=blocks.roles[i] if roles else None,
                                                  global_norms={k: v.repeat(n) for k, v in norms.items()} or None)
                total += new_w.reshape(n, Kt, -1).sum(dim=(0, 2))
                new_tensors.append(new_w)
            bad = ~torch.isfinite(mon) | (mon > bound) | ~torch.isfinite(total)
            if bool((bad & alive).any()):
                kill(bad, t + 1)
                all_alive = False
            if not all_alive:
                for i, w in enumerate(new_tensors):
                    n = blocks.n[i]
                    per_copy = alive.repeat(n)
                    new_tensors[i] = _freeze(w, per_copy)
                    blocks.state[i] = {k: _freeze(v, per_copy) for k, v in blocks.state[i].items()}
            blocks.tensors = [w.contiguous() for w in new_tensors]
        steps_run = t + 1
        copy_steps += Kt

    def shaped(a: np.ndarray) -> np.ndarray:
        return a.reshape(n_lr, n_seed, *a.shape[1:])

    metric_curves = shaped(curves.pop(metric))
    diverged = shaped(diverged_at >= 0)
    final = metric_curves[:, :, -1].copy()
    final[diverged] = np.nan
    return SweepOutcome(
        task=task.name, lrs=lrs, seeds=seeds, final=final, diverged=diverged, curves=metric_curves,
        curve_steps=pts, seconds=time.perf_counter() - t0, metric_name=metric,
        higher_is_better=task.higher_is_better, fidelity=fidelity, steps_run=steps_run,
        extra_curves={k: shaped(v) for k, v in curves.items()}, diverged_at=shaped(diverged_at), split=split,
        wds=wds, pruned=shaped(pruned) if rungs else None, copy_steps=copy_steps)
