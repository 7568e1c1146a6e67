"""The work done in a worker: one rule's vectorized sweeps on some tasks, reduced to summaries.

A :class:`SweepJob` (small, picklable) goes to an executor; :func:`run_sweep_job`
runs it there and returns one :class:`SweepSummary` per task: the held-out metric
per grid point and seed, the tuned point, and the curve at it.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field

import dsl
import proxies

from .executors import error_reason
from .rule_config import wd_axis


def _f(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


class SweepSummary(BaseModel):
    """One rule's learning-rate sweep on one task, reduced to what scoring and plots need.

    ``final[i][s]`` is the held-out metric at grid point ``i`` and seed ``s`` (None where
    diverged or pruned); ``best`` the tuned point (None when every point diverged);
    ``curve`` the seed-mean metric over training at the tuned point. A grid point is a
    learning rate ``lrs[i]``, or with a wd grid the pair (``lrs[i]``, ``wds[i]``).
    """
    task: str
    metric_name: str = "val_loss"
    higher_is_better: bool = False
    lrs: list[float] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    final: list[list[float | None]] = Field(default_factory=list)
    diverged: list[list[bool]] = Field(default_factory=list)
    best: int | None = None
    curve: list[float] = Field(default_factory=list)
    curve_steps: list[int] = Field(default_factory=list)
    seconds: float = 0.0
    error: str = ""
    #: per-point weight decay (None: the task's own, no wd grid)
    wds: list[float] | None = None
    #: [point][seed] dropped by successive halving (None: no halving)
    pruned: list[list[bool]] | None = None
    #: optimizer steps summed over the run's copies (its training cost)
    copy_steps: int = 0
    #: the task's solved level (``StackedTask.metric_floor``; 0 = none): losses are floored there
    metric_floor: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.error) or self.best is None

    @property
    def best_lr(self) -> float | None:
        return None if self.best is None else self.lrs[self.best]

    @property
    def best_wd(self) -> float | None:
        """The tuned weight decay (None without a wd grid or when every point diverged)."""
        return None if self.best is None or self.wds is None else self.wds[self.best]

    def per_lr(self) -> list[float | None]:
        """Seed-mean metric per grid point (None where any seed diverged or was pruned)."""
        out = []
        for row, div in zip(self.final, self.diverged):
            out.append(None if any(div) or any(v is None for v in row) else float(np.mean(row)))
        return out

    def best_metrics(self) -> list[float]:
        """Per-seed metrics at the tuned lr."""
        return [float(v) for v in self.final[self.best]] if self.best is not None else []

    def edge(self) -> str | None:
        """"low"/"high" when the tuned lr is at the edge of an lr grid of 3+ values."""
        lrs = sorted(set(self.lrs))
        if self.best is None or len(lrs) < 3:
            return None
        lr = self.lrs[self.best]
        return "low" if lr == lrs[0] else "high" if lr == lrs[-1] else None


def summarize(outcome: Any, task: Any) -> SweepSummary:
    """Reduce a ``proxies.SweepOutcome`` to a :class:`SweepSummary` (tuned lr = best seed-mean)."""
    final = np.asarray(outcome.final, dtype=np.float64)
    pr = getattr(outcome, "pruned", None)
    pruned = np.zeros(final.shape, dtype=bool) if pr is None else np.asarray(pr, dtype=bool)
    div = (np.asarray(outcome.diverged, dtype=bool) | ~np.isfinite(final)) & ~pruned
    hib = bool(task.higher_is_better)
    usable = ~(div | pruned).any(axis=1)
    best = None
    if usable.any():
        means = np.where(usable, np.where(div, 0.0, final).mean(axis=1), np.nan)
        best = int(np.nanargmax(means) if hib else np.nanargmin(means))
    curve: list[float] = []
    curves = np.asarray(getattr(outcome, "curves", np.empty((0,))), dtype=np.float64)
    if best is not None and curves.ndim == 3 and curves.shape[0] > best:
        c = curves[best].mean(axis=0)
        bad = np.flatnonzero(~np.isfinite(c))
        c = c[: bad[0]] if bad.size else c
        curve = [float(x) for x in c]
    steps = [int(s) for s in getattr(outcome, "curve_steps", [])][: len(curve)]
    return SweepSummary(task=task.name, metric_name=str(getattr(outcome, "metric_name", task.metric_name)),
                        higher_is_better=hib,
                        lrs=[float(x) for x in outcome.lrs], seeds=[int(s) for s in outcome.seeds],
                        final=[[None if d else _f(v) for v, d in zip(r, dr)] for r, dr in zip(final, div | pruned)],
                        diverged=[[bool(d) for d in dr] for dr in div], best=best, curve=curve,
                        curve_steps=steps, seconds=float(getattr(outcome, "seconds", 0.0)),
                        wds=None if getattr(outcome, "wds", None) is None else [float(x) for x in outcome.wds],
                        pruned=None if pr is None else [[bool(x) for x in r] for r in pruned],
                        copy_steps=int(getattr(outcome, "copy_steps", 0)),
                        metric_floor=float(getattr(task, "metric_floor", 0.0) or 0.0))


@dataclass(frozen=True)
class SweepJob:
    """One unit of work for an executor: sweep one rule on some tasks (picklable, small)."""
    source: str
    tasks: tuple[str, ...]
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    fidelity: str
    stop_on_failure: bool = True
    threads: int = 1
    split: str = "val"         # held-out split of the metric: "val" or "test"
    wd_grid: tuple[float, ...] | None = None   # tune wd too: the grid is lrs x wd_grid (None: task's own wd)
    wd_relative: bool = False  # wd_grid values are factors of each task's own weight_decay
    rungs: tuple[tuple[float, int], ...] = ()  # successive-halving rungs: (fraction of steps, points kept)
    #: the parent's sys.path, so a worker can import the modules of ``module:factory`` task specs
    sys_path: tuple[str, ...] = ()

    def grid(self, task_wd: float) -> tuple[list[float], list[float] | None]:
        """The sweep's grid points for a task: (lrs, wds), lr-major; wds None without a wd grid."""
        if self.wd_grid is None:
            return list(self.lrs), None
        axis = wd_axis(self.wd_grid, self.wd_relative, task_wd)
        return [lr for lr in self.lrs for _ in axis], [w for _ in self.lrs for w in axis]


def run_sweep_job(job: SweepJob) -> list[SweepSummary]:
    """Run in a worker: one vectorized sweep (all lrs x seeds) per task, tasks in order.

    A task whose sweep raises gets a summary with ``error`` set; with
    ``stop_on_failure`` the remaining tasks are skipped after the first task
    that errors or diverges at every lr (its score is the worst anyway).
    """
    for entry in reversed(job.sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    program = dsl.parse(job.source)
    out: list[SweepSummary] = []
    # proxies pins its sweeps to OPTFORGE_TORCH_THREADS threads (1 when unset): say ours explicitly.
    env_before = os.environ.get("OPTFORGE_TORCH_THREADS")
    before = torch.get_num_threads()
    os.environ["OPTFORGE_TORCH_THREADS"] = str(job.threads)
    if before != job.threads:
        torch.set_num_threads(job.threads)
    try:
        _run_tasks(job, program, out)
    finally:
        if env_before is None:
            os.environ.pop("OPTFORGE_TORCH_THREADS", None)
        else:
            os.environ["OPTFORGE_TORCH_THREADS"] = env_before
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)  # the in-process executor shares this process
    return out


def _run_tasks(job: SweepJob, program: dsl.Program, out: list[SweepSummary]) -> None:
    for name in job.tasks:
        t0 = time.perf_counter()
        try:
            task = proxies.get_task(name)
            lrs, wds = job.grid(float(getattr(task, "weight_decay", 0.0)))
            more = {} if wds is None else {"wds": wds}
            if job.rungs:
                more["rungs"] = [proxies.Rung(f, k) for f, k in job.rungs]
            res = task.sweep(program, lrs, list(job.seeds), job.fidelity, split=job.split, **more)
            summary = summarize(res, task)
            if summary.task != name:             # a spec task named itself: results go by the spec
                summary = summary.model_copy(update={"task": name})
        except Exception as e:  # noqa: BLE001 - reported as this task's error
            summary = SweepSummary(task=name, lrs=list(job.lrs), seeds=list(job.seeds), error=error_reason(e),
                                   seconds=time.perf_counter() - t0)
        out.append(summary)
        if job.stop_on_failure and summary.failed:
            break


__all__ = ["SweepJob", "SweepSummary", "run_sweep_job", "summarize"]
