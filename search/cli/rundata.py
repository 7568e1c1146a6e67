"""A run as data: the records ``optforge show`` (text and ``--json``) and the notebook API
(``search.api``) share, with an interval next to every score.

Intervals: a score is the mean over tasks of each task's log ratio against tuned AdamW; its interval
is ``evaluators.estimate``'s hierarchical bootstrap over tasks, then seeds within a task, of the
paired per-seed log ratios (``TaskResult.extra["seed_metrics"]`` against
``["baseline_seed_metrics"]``), each clipped like the task score is. A result without per-seed
metrics (a prompt run, a run from before they were stored, a failed task) has no interval ("-").
Stored verification entries carry their own ``estimate`` (``optforge verify``); older ones do not.
"""
from __future__ import annotations

import math
import re
from typing import Any

from evaluators import (
    Estimate,
    EvalResult,
    RuleEvalConfig,
    StatsError,
    Status,
    describe,
    estimate,
    per_seed_log_ratios,
)
from search.core import KindPlugin, RunView, fmt_score
from search.report import operator_rows, simplified_text
from search.rules import tasksets

#: bootstrap replicates for a displayed interval (percentiles of 2000 replicates move by < 0.01)
N_BOOT = 2000
_WHERE = re.compile(r"^(invalid|duplicate):\s*|line \d+, col \d+:\s*")


def run_clip(campaign: dict[str, Any], kind: str) -> float | None:
    """The clip of one task's score in this run (rules: ``task_clip``, else ``score_clip``)."""
    if kind != "rule":
        return None
    d = tasksets.with_tuning_defaults(dict(campaign.get("evaluator") or {}))   # what the run was scored with
    score_clip = float(d.get("score_clip") or RuleEvalConfig.model_fields["score_clip"].default)
    return min(score_clip, float(d["task_clip"])) if d.get("task_clip") else score_clip


def result_estimate(r: EvalResult | None, clip: float | None, seed: int = 0) -> Estimate | None:
    """The interval estimate of one evaluation's score (None without paired per-seed metrics)."""
    if r is None or r.status != Status.ok:
        return None
    per = {}
    for t, tr in r.tasks.items():
        if tr.status != Status.ok:
            return None
        try:
            per[t] = per_seed_log_ratios(tr, clip)
        except StatsError:
            return None
    if not per or not all(math.isfinite(float(x)) for v in per.values() for x in v):
        return None
    return estimate(per, n_boot=N_BOOT, seed=seed)


def stored_estimate(d: dict[str, Any] | None) -> Estimate | None:
    """An ``Estimate`` stored as its ``to_json()`` dict (None when absent or unreadable: an older run)."""
    if not d:
        return None
    try:
        return Estimate.from_json(d)
    except (KeyError, TypeError, ValueError):
        return None


def fmt_ci(ci: Any) -> str:
    """``[+0.034, +0.205]``, or ``-`` without an interval."""
    if not ci:
        return "-"
    return f"[{fmt_score(float(ci[0]), '-')}, {fmt_score(float(ci[1]), '-')}]"


def has_interval(e: Estimate | None) -> bool:
    """A bootstrap of one task's one seed is a point, not an interval."""
    return e is not None and (e.n_tasks > 1 or e.n_seeds > 1)


def reason_group(reason: str) -> str:
    """An invalid candidate's reason without where it happened (``invalid: line 3, col 5: X`` -> ``X``),
    so one cause reads as one group."""
    return _WHERE.sub("", reason or "no reason recorded").strip()[:100]


def failure_reason(r: EvalResult | None) -> str:
    """Why an evaluation failed: its reason, or its failed tasks' (``diverged ... on task t``)."""
    if r is None:
        return "not evaluated"
    bad = [(t, tr) for t, tr in r.tasks.items() if tr.status != Status.ok]
    if bad:
        return "; ".join(_on_task(tr.reason or str(tr.status.value), t) for t, tr in bad[:3]) + \
            (f"; and {len(bad) - 3} more task(s)" if len(bad) > 3 else "")
    return r.reason or str(r.status.value)


def _on_task(reason: str, task: str) -> str:
    return reason if task in reason else f"{reason} on task {task}"


def _ok(r: EvalResult | None) -> bool:
    return r is not None and r.status == Status.ok and math.isfinite(r.score)


def candidate_records(view: RunView, kind: KindPlugin | None = None, top: int | None = None) -> list[dict[str, Any]]:
    """The ranked candidates (final ranking, validated first) as flat records; with ``kind``, each
    with its simplified text (as exported)."""
    clip = run_clip(view.campaign, view.kind)
    out = []
    for rank, x in enumerate(view.ranked()[:top] if top else view.ranked(), 1):
        fid = view.fidelities[x["level"]]
        r = x["results"].get(fid)
        e = result_estimate(r, clip, seed=x["id"])
        v = x.get("validation")
        stored = (x["meta"].get("validation") or {}).get("estimate")   # the validation stage's own estimate
        ve = stored_estimate(stored) or result_estimate(v, clip, seed=x["id"])
        per_task = {}
        for t, tr in (r.tasks.items() if r is not None else ()):
            te = e.tasks.get(t) if e is not None and e.n_seeds > 1 else None
            per_task[t] = {"score": tr.score if tr.status == Status.ok else None, "lr": tr.best_lr,
                           "ci": list(te.ci) if te is not None else None,
                           "failure": None if tr.status == Status.ok else (tr.reason or tr.status.value)}
        rec: dict[str, Any] = {
            "rank": rank, "id": x["id"], "operator": x["operator"], "parents": list(x["parents"]),
            "generation": x["generation"], "seed": x["meta"].get("seed"), "fidelity": fid,
            "top_fidelity": x["level"] == len(view.fidelities) - 1,
            "score": x["score"] if _ok(r) else None,
            "ci": list(e.ci) if has_interval(e) else None,
            "p_improvement": e.p_improvement if has_interval(e) else None,
            "tasks_won": r.tasks_won if r is not None else None,
            "tasks": r.tasks_scored if r is not None else None,
            "failure": None if _ok(r) else failure_reason(r),
            "size": x["meta"].get("size"),
            "validation": v.score if _ok(v) else None,
            "validation_ci": list(ve.ci) if has_interval(ve) else None,
            "validation_won": v.tasks_won if v is not None else None,
            "validation_tasks": v.tasks_scored if v is not None else None,
            "validation_failure": None if v is None or _ok(v) else failure_reason(v),
            "validation_p_improvement": ve.p_improvement if has_interval(ve) else None,
            "validation_verdict": describe(ve) if has_interval(ve) and v is not None and _ok(v) else None,
            "per_task": per_task,
        }
        if kind is not None:
            rec["text"] = simplified_text(kind, x)
        out.append(rec)
    return out


def evaluation_records(view: RunView) -> list[dict[str, Any]]:
    """Every finished evaluation in arrival order (search, simplification and validation phases)."""
    out = []
    for e in view.evaluations:
        out.append({"seq": e["seq"], "candidate": e["candidate_id"], "phase": e["phase"], "fidelity": e["fidelity"],
                    "score": e["score"] if e["status"] == "ok" and math.isfinite(e["score"]) else None,
                    "status": e["status"], "cost": e["cost"], "seconds": e["seconds"], "time": e["created"]})
    return out


def verify_records(view: RunView) -> list[dict[str, Any]]:
    """The stored verification, one record per rule: scores, intervals and verdicts where stored."""
    rec = view.verification()
    if rec is None:
        return []
    out = []
    for e in rec.get("entries", []):
        est = e.get("estimate") or {}
        out.append({"label": e.get("label"), "id": e.get("id"), "kind": e.get("kind"), "rank": e.get("rank"),
                    "search": e.get("search"), "validation": e.get("validation"),
                    "validation_test": e.get("validation_test"), "verified": e.get("verified"),
                    "verified_won": e.get("verified_won"), "verified_n": e.get("verified_n"),
                    "ci": e.get("ci") or est.get("ci"), "p_improvement": e.get("p_improvement",
                                                                               est.get("p_improvement")),
                    "verdict": e.get("verdict") or est.get("verdict"), "holds": e.get("holds"),
                    "tasks": {t: {"group": c.get("group"), "score": c.get("score"), "ci": c.get("ci"),
                                  "noise": c.get("noise"), "reason": c.get("reason") or None}
                              for t, c in (e.get("tasks") or {}).items()}})
    return out


def operator_records(view: RunView) -> list[dict[str, Any]]:
    """Per operator: proposals, valid, invalid, duplicates, trained ok, failed, improved, best, reward, share."""
    rows, _ = operator_rows(view)
    return [{"operator": r.operator, "proposals": r.proposals, "valid": r.valid, "invalid": r.invalid,
             "duplicate": r.duplicate, "trained_ok": r.trained_ok, "failed": r.failed,
             "not_evaluated": r.not_evaluated, "improved": r.improved,
             "best": r.best if r.trained_ok else None, "mean_reward": r.mean_reward, "share": r.share}
            for r in rows]


def invalid_groups(view: RunView) -> list[tuple[str, int]]:
    """Invalid proposals' reasons grouped by message (most frequent first)."""
    counts: dict[str, int] = {}
    for x in view.all:
        if x["state"] == "invalid":
            g = reason_group(x["reason"])
            counts[g] = counts.get(g, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def run_json(view: RunView, kind: KindPlugin | None = None, top: int | None = None) -> dict[str, Any]:
    """One JSON object for a run: summary, candidates with intervals, verification, operator statistics."""
    c = view.campaign
    return {"run": str(view.run_dir), "campaign": c.get("name"), "kind": view.kind, "status": view.status,
            "fidelities": list(view.fidelities), "budget": c.get("budget", {}).get("evaluations"),
            "used": sum(e["cost"] for e in view.evaluations),
            "wall_seconds": view.store.get_meta("wall", 0.0),
            "candidates": candidate_records(view, kind, top),
            "invalid_reasons": [{"reason": r, "count": n} for r, n in invalid_groups(view)],
            "verify": verify_records(view) or None,
            "verify_summary": _verify_summary(view),
            "operators": operator_records(view)}


def _verify_summary(view: RunView) -> dict[str, Any] | None:
    rec = view.verification()
    if rec is None:
        return None
    return {k: rec.get(k) for k in ("fidelity", "seeds", "split", "validation_tasks", "transfer_tasks", "created")}
