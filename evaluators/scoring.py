"""Scoring: a candidate's tuned sweep against the tuned baseline's, per task (see ``evaluators.rules``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import Status, TaskResult
from .sweeps import SweepSummary

#: Metrics are floored here before taking logs (a loss of exactly 0, an accuracy of 0).
METRIC_FLOOR = 1e-12


def task_score(cand: SweepSummary, base: SweepSummary, clip: float) -> float:
    """Seed-paired mean log ratio vs the baseline at their own tuned lrs, clipped (see module doc)."""
    c = np.maximum(np.asarray(cand.best_metrics()), METRIC_FLOOR)
    b = np.maximum(np.asarray(base.best_metrics()), METRIC_FLOOR)
    r = np.log(c / b) if cand.higher_is_better else np.log(b / c)
    return float(np.clip(r.mean(), -clip, clip))


def _edge_warning(s: SweepSummary, who: str) -> str:
    side = s.edge()
    if side is None:
        return ""
    lo, hi = s.lrs[0], s.lrs[-1]
    toward = "smaller" if side == "low" else "larger"
    return (f"{who} tuned lr {s.best_lr:.3g} is at the {side} edge of the grid [{lo:.3g}, {hi:.3g}] "
            f"(it may do better at {toward} lrs; widen or move the grid)")


def task_result(cand: SweepSummary, base: SweepSummary, clip: float) -> TaskResult:
    """The TaskResult of a successful candidate sweep against the baseline's."""
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
    return TaskResult(task=cand.task, metric=float(np.mean(cand.best_metrics())),
                      metric_name=cand.metric_name, higher_is_better=cand.higher_is_better,
                      baseline=float(np.mean(base.best_metrics())), score=task_score(cand, base, clip),
                      best_lr=cand.best_lr, status=Status.ok, curve=cand.curve, extra=extra)


def failed_task_result(s: SweepSummary, status: Status, reason: str) -> TaskResult:
    return TaskResult(task=s.task, metric=float("nan"), metric_name=s.metric_name,
                      higher_is_better=s.higher_is_better, status=status, reason=reason,
                      extra={"lrs": s.lrs, "n_diverged": int(sum(sum(r) for r in s.diverged)),
                             "seconds": s.seconds})


__all__ = ["METRIC_FLOOR", "task_score", "task_result", "failed_task_result"]
