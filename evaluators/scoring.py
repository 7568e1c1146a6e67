"""Scoring: a candidate's tuned sweep against the tuned baseline's, per task (see ``evaluators.rules``)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Status, TaskResult
from .sweeps import SweepSummary

#: Metrics are floored here before taking logs (a loss of exactly 0, an accuracy of 0).
METRIC_FLOOR = 1e-12


def floored_log_ratios(cand: Sequence[float], base: Sequence[float], higher_is_better: bool,
                       solved: float = 0.0) -> np.ndarray:
    """Per-seed ``log(base / cand)`` (losses) or ``log(cand / base)`` (higher is better) of paired
    metrics, each first raised to ``max(solved, METRIC_FLOOR)``.

    ``solved`` is a loss task's solved level (``StackedTask.metric_floor``): below it a lower loss
    measures over-confidence on an easy task, not better optimization, so two runs that both reach it
    tie (log ratio 0) instead of clipping at +-task_clip on a difference of 0.01 vs 0.001 nats."""
    f = METRIC_FLOOR if higher_is_better else max(METRIC_FLOOR, float(solved))
    c, b = np.maximum(np.asarray(cand, dtype=float), f), np.maximum(np.asarray(base, dtype=float), f)
    return np.log(c / b) if higher_is_better else np.log(b / c)


def solved_level(cand: SweepSummary, base: SweepSummary) -> float:
    """The pair's solved level: the task's ``metric_floor`` as either summary carries it (0 = none)."""
    return max(cand.metric_floor, base.metric_floor)


def log_ratio(cand: SweepSummary, base: SweepSummary) -> float:
    """Seed-paired mean log ratio vs the baseline at their own tuned grid points (unclipped):
    log(baseline / candidate) for losses, log(candidate / baseline) for higher-is-better metrics,
    losses floored at the task's solved level (:func:`floored_log_ratios`)."""
    return float(floored_log_ratios(cand.best_metrics(), base.best_metrics(), cand.higher_is_better,
                                    solved_level(cand, base)).mean())


def task_score(cand: SweepSummary, base: SweepSummary, clip: float) -> float:
    """The task's log ratio (:func:`log_ratio`) clipped to ``[-clip, clip]``."""
    return float(np.clip(log_ratio(cand, base), -clip, clip))


def mean_score(scores: Sequence[float]) -> float:
    """The overall score: the mean of the (clipped) task scores."""
    return float(np.mean(list(scores)))


def tasks_won(scores: Sequence[float], margin: float = 0.0) -> int:
    """How many task scores beat the baseline by more than ``margin`` (0: strictly better)."""
    return int(sum(1 for s in scores if s > margin))


def _edge_warning(s: SweepSummary, who: str) -> str:
    side = s.edge()
    if side is None:
        return ""
    lo, hi = s.lrs[0], s.lrs[-1]
    toward = "smaller" if side == "low" else "larger"
    return (f"{who} tuned lr {s.best_lr:.3g} is at the {side} edge of the grid [{lo:.3g}, {hi:.3g}] "
            f"(it may do better at {toward} lrs; widen or move the grid)")


def task_result(cand: SweepSummary, base: SweepSummary, clip: float, raw: bool = False) -> TaskResult:
    """The TaskResult of a successful candidate sweep against the baseline's.

    With a wd grid the extras hold the tuned ``best_wd`` / ``baseline_wd`` (and the grid's
    ``wds``); with successive halving the training cost ``copy_steps`` / ``baseline_copy_steps``;
    with ``raw`` the unclipped ``log_ratio``. Without them the result is as it always was."""
    extra: dict[str, Any] = {
        "lrs": cand.lrs, "per_lr": cand.per_lr(), "seed_metrics": cand.best_metrics(),
        "n_diverged": int(sum(sum(r) for r in cand.diverged)),
        "curve_steps": cand.curve_steps, "seconds": cand.seconds,
        "baseline_lr": base.best_lr, "baseline_seed_metrics": base.best_metrics(),
        "baseline_curve": base.curve, "baseline_curve_steps": base.curve_steps,
    }
    warnings = [w for w in (_edge_warning(cand, "the rule's"), _edge_warning(base, "the baseline's")) if w]
    if warnings:
        extra["warnings"] = warnings
    if cand.edge():
        extra["lr_at_edge"] = cand.edge()
    if cand.wds is not None:
        extra.update(wds=cand.wds, best_wd=cand.best_wd, baseline_wd=base.best_wd)
    if cand.pruned is not None:
        extra.update(copy_steps=cand.copy_steps, baseline_copy_steps=base.copy_steps)
    if raw:
        extra["log_ratio"] = log_ratio(cand, base)
    solved = solved_level(cand, base)
    if solved > 0:
        extra["metric_floor"] = solved
    return TaskResult(task=cand.task, metric=float(np.mean(cand.best_metrics())),
                      metric_name=cand.metric_name, higher_is_better=cand.higher_is_better,
                      baseline=float(np.mean(base.best_metrics())), score=task_score(cand, base, clip),
                      best_lr=cand.best_lr, status=Status.ok, curve=cand.curve, extra=extra)


def failed_task_result(s: SweepSummary, status: Status, reason: str) -> TaskResult:
    return TaskResult(task=s.task, metric=float("nan"), metric_name=s.metric_name,
                      higher_is_better=s.higher_is_better, status=status, reason=reason,
                      extra={"lrs": s.lrs, "n_diverged": int(sum(sum(r) for r in s.diverged)),
                             "seconds": s.seconds})


__all__ = ["METRIC_FLOOR", "floored_log_ratios", "solved_level",
           "log_ratio", "task_score", "mean_score", "tasks_won", "task_result", "failed_task_result"]
