"""Intervals and verdicts for scores against a tuned baseline.

A rule's score on a task is the seed-paired log ratio ``r_s = log(b_s / c_s)`` (losses; ``log(c_s / b_s)``
for higher-is-better metrics) of the tuned baseline's metric ``b_s`` and the rule's ``c_s`` on seed ``s``
(same init and data order), optionally clipped to ``[-clip, clip]``. The task score is the mean over
seeds; the overall score aggregates task scores (``mean`` by default).

Uncertainty comes from two sources, so the bootstrap is hierarchical: each replicate draws the tasks
with replacement, then each drawn task's seeds with replacement, and recomputes the aggregate. The
interval is the percentile interval of the replicates; ``p_improvement`` is the share of replicates
whose aggregate is > 0. A task is *won beyond noise* when its score exceeds its noise floor (the spread
of AdamW against itself on disjoint seeds, see ``evaluators.noise``); without a floor, when its own
seed interval lies above 0.

Verdict: ``holds`` when the interval's lower bound is > 0 and more than half the tasks are won beyond
noise; ``worse`` when its upper bound is < 0 and more than half the tasks are lost beyond noise (score
below minus the floor); otherwise ``indistinguishable``. The noise condition is symmetric on purpose: a
rule that computes AdamW's update up to rounding has a consistent, tiny per-seed difference whose
interval excludes 0 (say -1e-7 [-2e-7, -5e-8]); that is not "worse" any more than +1e-7 is "holds".
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import TaskResult
from .scoring import floored_log_ratios

VERDICTS = ("holds", "indistinguishable", "worse")
AGGREGATES = ("mean", "median", "iqm")

class StatsError(ValueError):
    """Input the statistics cannot use (no tasks, no seeds, non-finite ratios, unknown aggregate)."""


@dataclass
class TaskEstimate:
    score: float
    ci: tuple[float, float]
    noise: float | None
    n_seeds: int
    beyond_noise: bool

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "ci": [self.ci[0], self.ci[1]], "noise": self.noise,
                "n_seeds": self.n_seeds, "beyond_noise": self.beyond_noise}


@dataclass
class Estimate:
    score: float
    ci: tuple[float, float]
    p_improvement: float
    verdict: str
    aggregate: str
    level: float
    n_tasks: int
    n_seeds: int
    tasks: dict[str, TaskEstimate] = field(default_factory=dict)

    @property
    def tasks_beyond_noise(self) -> int:
        return sum(1 for t in self.tasks.values() if t.beyond_noise)

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "ci": [self.ci[0], self.ci[1]], "p_improvement": self.p_improvement,
                "verdict": self.verdict, "aggregate": self.aggregate, "level": self.level,
                "n_tasks": self.n_tasks, "n_seeds": self.n_seeds,
                "tasks": {k: t.to_json() for k, t in self.tasks.items()}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Estimate":
        """The inverse of :meth:`to_json` (for stored runs)."""
        tasks = {k: TaskEstimate(score=float(t["score"]), ci=(float(t["ci"][0]), float(t["ci"][1])),
                                 noise=None if t.get("noise") is None else float(t["noise"]),
                                 n_seeds=int(t["n_seeds"]), beyond_noise=bool(t["beyond_noise"]))
                 for k, t in d.get("tasks", {}).items()}
        return cls(score=float(d["score"]), ci=(float(d["ci"][0]), float(d["ci"][1])),
                   p_improvement=float(d["p_improvement"]), verdict=str(d["verdict"]),
                   aggregate=str(d["aggregate"]), level=float(d["level"]), n_tasks=int(d["n_tasks"]),
                   n_seeds=int(d["n_seeds"]), tasks=tasks)


def per_seed_log_ratios(tr: TaskResult, clip: float | None = None) -> np.ndarray:
    """The paired per-seed log ratios of one task result (higher is better; 0 = the baseline).

    A non-finite (diverged) rule metric counts as ``-inf``, a non-finite baseline metric as ``+inf``
    (both: 0); with ``clip`` every seed's ratio is clipped to ``[-clip, clip]``."""
    if "seed_metrics" not in tr.extra or "baseline_seed_metrics" not in tr.extra:
        raise StatsError(f"task {tr.task!r} has no per-seed metrics (a failed or pre-pairing result); "
                         "re-evaluate it to get paired seeds")
    c = np.asarray(tr.extra["seed_metrics"], dtype=float)
    b = np.asarray(tr.extra["baseline_seed_metrics"], dtype=float)
    if c.shape != b.shape or c.size == 0:
        raise StatsError(f"task {tr.task!r}: {c.size} rule seeds vs {b.size} baseline seeds; "
                         "the seeds must be paired (evaluate both on the same seeds)")
    cf, bf = np.isfinite(c), np.isfinite(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = floored_log_ratios(np.where(cf, c, 1.0), np.where(bf, b, 1.0), tr.higher_is_better,
                               tr.extra.get("metric_floor", 0.0))
    r = np.where(cf & bf, r, np.where(cf, np.inf, np.where(bf, -np.inf, 0.0)))
    if clip is not None:
        r = np.clip(r, -clip, clip)
    return r.astype(float)


def _aggregate(x: np.ndarray, how: str) -> np.ndarray:
    """Aggregate over the last axis: mean, median, or the interquartile mean (the mean of the
    middle half after sorting; ``floor(n/4)`` dropped from each end, the mean for n < 4)."""
    if how == "mean":
        return x.mean(axis=-1)
    if how == "median":
        return np.median(x, axis=-1)
    n = x.shape[-1]
    k = n // 4
    s = np.sort(x, axis=-1)
    return s[..., k:n - k].mean(axis=-1)


def _interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [a, 1.0 - a])
    return float(lo), float(hi)


def estimate(per_task: Mapping[str, Sequence[float]], noise: Mapping[str, float] | None = None, *,
             level: float = 0.95, n_boot: int = 4000, seed: int = 0, aggregate: str = "mean") -> Estimate:
    """Score, interval and verdict of per-task per-seed paired log ratios (see the module docstring).

    ``noise`` maps a task to its noise floor in score units (tasks missing from it fall back to their
    own seed interval). Deterministic for a given ``seed``."""
    if aggregate not in AGGREGATES:
        raise StatsError(f"unknown aggregate {aggregate!r}; use one of {', '.join(AGGREGATES)}")
    if not 0.0 < level < 1.0:
        raise StatsError(f"level must lie in (0, 1), got {level}")
    if n_boot < 100:
        raise StatsError(f"n_boot={n_boot} is too few bootstrap replicates for an interval; use >= 100")
    if not per_task:
        raise StatsError("no tasks to estimate from (every task failed or none was scored)")
    names = list(per_task)
    data = []
    for name in names:
        x = np.asarray(per_task[name], dtype=float).ravel()
        if x.size == 0:
            raise StatsError(f"task {name!r} has no seeds")
        if not np.all(np.isfinite(x)):
            raise StatsError(f"task {name!r} has non-finite log ratios (a diverged seed); pass clip= to "
                             "per_seed_log_ratios so they count as the worst score")
        data.append(x)
    noise = dict(noise or {})
    rng = np.random.default_rng(seed)
    # (n_tasks, n_boot): each task's seed-resampled mean per replicate.
    seed_boot = np.stack([x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1) for x in data])
    tasks: dict[str, TaskEstimate] = {}
    for i, (name, x) in enumerate(zip(names, data)):
        sc = float(x.mean())
        ci = _interval(seed_boot[i], level)
        fl = noise.get(name)
        fl = None if fl is None or not math.isfinite(float(fl)) else float(fl)
        beyond = sc > fl if fl is not None else ci[0] > 0.0
        tasks[name] = TaskEstimate(score=sc, ci=ci, noise=fl, n_seeds=int(x.size), beyond_noise=bool(beyond))
    n = len(names)
    pick = rng.integers(0, n, size=(n_boot, n))
    boot = _aggregate(seed_boot[pick, np.arange(n_boot)[:, None]], aggregate)
    score = float(_aggregate(np.array([t.score for t in tasks.values()]), aggregate))
    ci = _interval(boot, level)
    p = float(np.mean(boot > 0.0))
    won = sum(1 for t in tasks.values() if t.beyond_noise)
    lost = sum(1 for t in tasks.values() if (t.score < -t.noise if t.noise is not None else t.ci[1] < 0.0))
    if ci[0] > 0.0 and won > n / 2:
        verdict = "holds"
    elif ci[1] < 0.0 and lost > n / 2:
        verdict = "worse"
    else:
        verdict = "indistinguishable"
    return Estimate(score=score, ci=ci, p_improvement=p, verdict=verdict, aggregate=aggregate, level=level,
                    n_tasks=n, n_seeds=min(t.n_seeds for t in tasks.values()), tasks=tasks)


def estimate_results(results: Mapping[str, TaskResult], noise: Mapping[str, float] | None = None, *,
                     clip: float | None = None, **kw: Any) -> Estimate:
    """:func:`estimate` of successful task results' paired seeds (``clip`` per seed)."""
    per = {k: per_seed_log_ratios(tr, clip) for k, tr in results.items()}
    return estimate(per, noise, **kw)


def _fmt(x: float) -> str:
    return f"{x:+.3f}"


def describe(e: Estimate, baseline: str = "tuned AdamW") -> str:
    """The one wording of an estimate, e.g. ``holds: +0.121 [+0.034, +0.205] vs tuned AdamW (95% CI,
    mean over 4 tasks x 4 seeds, P(better) 0.99)``."""
    nums = f"{_fmt(e.score)} [{_fmt(e.ci[0])}, {_fmt(e.ci[1])}]"
    tail = (f"({e.level * 100:g}% CI, {e.aggregate} over {e.n_tasks} task{'s' * (e.n_tasks != 1)} x "
            f"{e.n_seeds} seed{'s' * (e.n_seeds != 1)}, P(better) {e.p_improvement:.2f})")
    if e.verdict == "holds":
        return f"holds: {nums} vs {baseline} {tail}"
    if e.verdict == "worse":
        return f"worse than {baseline}: {nums} {tail}"
    side = "above" if e.ci[0] > 0 else "below" if e.ci[1] < 0 else None
    why = (f"; its interval is {side} 0, but most tasks are within their noise floor"
           if side is not None and any(t.noise is not None for t in e.tasks.values()) else "")
    return f"indistinguishable from {baseline}: {nums} {tail}{why}"


__all__ = ["VERDICTS", "AGGREGATES", "StatsError", "TaskEstimate", "Estimate", "per_seed_log_ratios", "estimate",
           "estimate_results", "describe"]
