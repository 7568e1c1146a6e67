"""RuleEvaluator: fair, vectorized, fault-tolerant scores for update rules.

Fair scoring ("Fantastic Pretraining Optimizers and Where to Find Them"):
every rule, AdamW included, is tuned on the same log grid of learning rates
with the same seeds, and a candidate is scored relative to tuned AdamW on the
same task, fidelity, seeds and grid.

For one task, with ``m[i, s]`` the held-out metric at learning rate ``i`` and
seed ``s`` (one vectorized training run over the whole grid and all seeds):

* a learning rate is *usable* when no seed diverged there;
* the tuned learning rate is ``i* = argbest_i mean_s m[i, s]`` over usable ones
  (argmin for losses, argmax for higher-is-better metrics);
* the task score pairs seeds (same init and data order) and averages
  ``log(b[s] / c[s])`` for losses, ``log(c[s] / b[s])`` for higher-is-better
  metrics, where ``c`` and ``b`` are the candidate's and AdamW's metrics at
  their own tuned learning rates: 0 means "as good as tuned AdamW", +0.1
  means about 10% lower loss. It is clipped to ``[-score_clip, score_clip]``
  so a single degenerate task (a loss near 0) cannot dominate the mean.

Held-out split: ``RuleEvalConfig.split`` is "val" by default, what a search
selects on; "test" computes every metric (baseline included) on the tasks'
held-out test splits, for reporting rules after selection. The split is part of
the config hash, so cached val and test results never mix.

The overall score is the mean of the task scores. A rule that diverges at
every learning rate of a task gets ``WORST_SCORE`` (status ``diverged``), and
the evaluation of its remaining tasks is skipped.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import dsl
from dsl import DSLError

from .base import WORST_SCORE, Candidate, EvalResult, Evaluator, OnResult, ResultStream, Status, TaskResult
from .cache import EvalCache
from .executors import Executor, Outcome, available_cores, make_executor

#: Metrics are floored here before taking logs (a loss of exactly 0, an accuracy of 0).
METRIC_FLOOR = 1e-12


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

def _default_suite() -> list[str]:
    import proxies
    return list(proxies.DEFAULT_SUITE)


class LrGrid(BaseModel):
    """A log-spaced learning-rate grid: ``points`` values spanning ``width`` decades around ``center``.

    The default, 9 points from 1e-4 to 1 (half-decade steps), is ``center=1e-2, width=4``. It is
    that wide because the tuned optimum moves with the rule and the fidelity: measured at tiny/small,
    tuned AdamW sits at 1e-2..3e-1 and tuned SGD-momentum at 1e-3..3e-1 across the default suite, so a
    grid ending at 1e-1 left both baselines at its edge (an unfair, under-tuned comparison).
    ``values`` gives an explicit grid instead.
    """
    model_config = ConfigDict(extra="forbid")

    center: float = Field(default=1e-2, gt=0)
    width: float = Field(default=4.0, ge=0, description="decades spanned by the grid")
    points: int = Field(default=9, ge=1, le=64)
    values: list[float] | None = None

    @field_validator("values")
    @classmethod
    def _check_values(cls, v):
        if v is not None:
            if not v:
                raise ValueError("an explicit lr grid needs at least one value")
            if any(not (x > 0 and math.isfinite(x)) for x in v):
                raise ValueError(f"learning rates must be positive and finite, got {v}")
            if len(set(v)) != len(v):
                raise ValueError(f"learning rates must be distinct, got {v}")
            v = sorted(float(x) for x in v)
        return v

    def lrs(self) -> list[float]:
        """The grid, ascending."""
        if self.values is not None:
            return list(self.values)
        if self.points == 1:
            return [float(self.center)]
        c = math.log10(self.center)
        return [float(x) for x in np.logspace(c - self.width / 2, c + self.width / 2, self.points)]

    @classmethod
    def from_range(cls, lo: float, hi: float, points: int) -> "LrGrid":
        """The grid of ``points`` log-spaced values from ``lo`` to ``hi``."""
        if not (0 < lo <= hi):
            raise ValueError(f"need 0 < lo <= hi, got lo={lo}, hi={hi}")
        return cls(center=math.sqrt(lo * hi), width=math.log10(hi / lo), points=points)


class RuleEvalConfig(BaseModel):
    """How rules are scored. Fields that change scores enter :meth:`result_hash` (the cache key);
    where and how fast they run (executor, workers, timeout, cache_dir) do not."""
    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(default_factory=_default_suite, description="proxy task names")
    lr_grid: LrGrid = Field(default_factory=LrGrid)
    seeds: list[int] = Field(default_factory=lambda: [0, 1])
    baseline: str = Field(default="adamw", description="the reference rule: a dsl.library name or DSL source")
    score_clip: float = Field(default=5.0, gt=0, description="task scores are clipped to +-score_clip")
    timeout_s: float | None = Field(default=600.0, gt=0, description="time limit of one candidate's work "
                                    "unit (all its tasks, or one task when work is split per task)")
    baseline_timeout_s: float | None = Field(default=None, gt=0, description="time limit of one "
                                             "baseline sweep (None: no limit; the baseline is trusted)")
    torch_threads: int = Field(default=1, ge=1, le=256, description="torch intra-op threads of one "
                               "evaluation. Float sums depend on it, so it is pinned (and hashed) to keep "
                               "results identical whichever executor runs them")
    executor: Literal["inprocess", "pool", "ray"] = "pool"
    workers: int | None = Field(default=None, ge=1, description="pool size (default: cores // "
                                "torch_threads)")
    ray_address: str | None = Field(default=None, description="Ray cluster address; None: local Ray")
    cache_dir: str | None = Field(default=None, description="directory (or .sqlite file) of the "
                                  "persistent result cache; None: memory only")
    split: Literal["val", "test"] = Field(default="val", description="held-out split the tasks' metric "
                                          "is computed on: 'val' (what a search selects on) or 'test' "
                                          "(reporting selected rules only; a search must never see it)")

    @field_validator("tasks")
    @classmethod
    def _check_tasks(cls, v):
        if not v:
            raise ValueError("at least one task is needed")
        if len(set(v)) != len(v):
            raise ValueError(f"tasks are listed twice: {v}")
        return v

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, v):
        if not v:
            raise ValueError("at least one seed is needed")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v

    @model_validator(mode="after")
    def _check_known_tasks(self):
        import proxies
        known = list(proxies.list_tasks())
        unknown = [t for t in self.tasks if t not in known]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known tasks: {', '.join(known)}")
        return self

    def result_hash(self) -> str:
        """Hash of everything that changes a score (part of every cache key)."""
        import proxies
        task_meta = {}
        for name in self.tasks:
            t = proxies.get_task(name)
            task_meta[name] = {"steps": dict(getattr(t, "steps", {})),
                               "wd": float(getattr(t, "weight_decay", 0.0)),
                               "metric": getattr(t, "metric_name", ""),
                               "version": str(getattr(t, "version", ""))}
        payload = {"tasks": self.tasks, "lrs": [float(f"{x:.12g}") for x in self.lr_grid.lrs()],
                   "seeds": self.seeds, "baseline": rule_key(baseline_source(self.baseline)),
                   "clip": self.score_clip, "threads": self.torch_threads, "task_meta": task_meta,
                   "scoring": 1, "split": self.split}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------
# Rule identity
# ---------------------------------------------------------------------------

def baseline_source(name_or_source: str) -> str:
    """DSL source of the reference rule: a ``dsl.library`` rule name, or DSL source itself."""
    if "(" in name_or_source:
        return dsl.parse(name_or_source).source()
    return library_source(name_or_source)


def library_source(name: str) -> str:
    """Canonical source of a library rule (``dsl.get_rule``; KeyError lists the known names)."""
    return dsl.get_rule(name).source()


def rule_key(source_or_program: str | dsl.Program) -> str:
    """The cache key of a rule: ``dsl.fingerprint`` (functional hash), so renamed or rewritten but
    identical functions share results; a hash of the canonical source if fingerprinting fails."""
    prog = source_or_program if isinstance(source_or_program, dsl.Program) else dsl.parse(source_or_program)
    try:
        return str(dsl.fingerprint(prog))
    except Exception:  # noqa: BLE001 - a rule the fingerprinter chokes on still gets a key
        return "src:" + hashlib.sha256(prog.source().encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------
# The work done in a worker: sweeps, summarized
# ---------------------------------------------------------------------------

def _f(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


class SweepSummary(BaseModel):
    """One rule's learning-rate sweep on one task, reduced to what scoring and plots need.

    ``final[i][s]`` is the held-out metric at lr ``i`` and seed ``s`` (None where
    diverged); ``best`` the tuned lr index (None when every lr diverged);
    ``curve`` the seed-mean metric over training at the tuned lr.
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

    @property
    def failed(self) -> bool:
        return bool(self.error) or self.best is None

    @property
    def best_lr(self) -> float | None:
        return None if self.best is None else self.lrs[self.best]

    def per_lr(self) -> list[float | None]:
        """Seed-mean metric per lr (None where any seed diverged)."""
        out = []
        for row, div in zip(self.final, self.diverged):
            out.append(None if any(div) or any(v is None for v in row) else float(np.mean(row)))
        return out

    def best_metrics(self) -> list[float]:
        """Per-seed metrics at the tuned lr."""
        return [float(v) for v in self.final[self.best]] if self.best is not None else []

    def edge(self) -> str | None:
        """"low"/"high" when the tuned lr is at the edge of a grid of 3+ points."""
        if self.best is None or len(self.lrs) < 3:
            return None
        return "low" if self.best == 0 else "high" if self.best == len(self.lrs) - 1 else None


def summarize(outcome: Any, task: Any) -> SweepSummary:
    """Reduce a ``proxies.SweepOutcome`` to a :class:`SweepSummary` (tuned lr = best seed-mean)."""
    final = np.asarray(outcome.final, dtype=np.float64)
    div = np.asarray(outcome.diverged, dtype=bool) | ~np.isfinite(final)
    hib = bool(task.higher_is_better)
    usable = ~div.any(axis=1)
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
                        final=[[None if d else _f(v) for v, d in zip(r, dr)] for r, dr in zip(final, div)],
                        diverged=[[bool(d) for d in dr] for dr in div], best=best, curve=curve,
                        curve_steps=steps, seconds=float(getattr(outcome, "seconds", 0.0)))


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


def run_sweep_job(job: SweepJob) -> list[SweepSummary]:
    """Run in a worker: one vectorized sweep (all lrs x seeds) per task, tasks in order.

    A task whose sweep raises gets a summary with ``error`` set; with
    ``stop_on_failure`` the remaining tasks are skipped after the first task
    that errors or diverges at every lr (its score is the worst anyway).
    """
    import torch
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
    import proxies
    for name in job.tasks:
        t0 = time.perf_counter()
        try:
            task = proxies.get_task(name)
            res = task.sweep(program, list(job.lrs), list(job.seeds), job.fidelity, split=job.split)
            summary = summarize(res, task)
        except Exception as e:  # noqa: BLE001 - reported as this task's error
            text = str(e).strip()
            summary = SweepSummary(task=name, lrs=list(job.lrs), seeds=list(job.seeds),
                                   error=f"{type(e).__name__}: {text}" if text else type(e).__name__,
                                   seconds=time.perf_counter() - t0)
        out.append(summary)
        if job.stop_on_failure and summary.failed:
            break


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# The evaluator
# ---------------------------------------------------------------------------

@dataclass
class _Pending:
    """A candidate that needs training: its source, key and the summaries gathered so far."""
    index: int
    source: str
    key: str
    summaries: dict[str, SweepSummary]
    killed: dict[str, Status] | None = None    # task -> timeout/error when its work unit never returned
    seconds: float = 0.0


class RuleEvaluator(Evaluator):
    """Scores DSL update rules on proxy tasks relative to tuned AdamW (see the module docstring).

    ``evaluate(candidates, fidelity)`` parses each candidate (a parse error is
    status ``invalid``), looks it up in the cache by fingerprint, runs the
    missing sweeps through the executor (one work unit per candidate, or per
    candidate and task when there are fewer candidates than workers), and
    never raises for a bad candidate. Baselines are computed once per task,
    fidelity, grid and seeds, and cached like results.
    """

    kind = "rule"

    def __init__(self, config: RuleEvalConfig | None = None, *, executor: Executor | None = None,
                 cache: EvalCache | None = None):
        import proxies
        self.config = config or RuleEvalConfig()
        self.fidelities = tuple(getattr(proxies, "FIDELITIES", ("tiny", "small", "full")))
        self._executor = executor
        self._owns_executor = executor is None
        self.cache = cache if cache is not None else EvalCache(self.config.cache_dir)
        self.config_hash = self.config.result_hash()
        self.baseline_source = baseline_source(self.config.baseline)
        self._baseline_key = rule_key(self.baseline_source)
        self._lrs = tuple(self.config.lr_grid.lrs())
        self._seeds = tuple(self.config.seeds)
        self.trained = 0          # candidates actually trained (not served from a cache)
        self._failed_baselines: dict[str, SweepSummary] = {}  # deterministic failures, not retried

    # -- plumbing --------------------------------------------------------------
    @property
    def executor(self) -> Executor:
        if self._executor is None:
            c = self.config
            if c.executor == "pool":
                workers = c.workers or max(1, available_cores() // c.torch_threads)
                self._executor = make_executor("pool", workers=workers, threads=c.torch_threads)
            elif c.executor == "ray":
                self._executor = make_executor("ray", address=c.ray_address, num_cpus=c.workers,
                                               threads=c.torch_threads)
            else:
                self._executor = make_executor("inprocess")
        return self._executor

    def close(self) -> None:
        if self._executor is not None and self._owns_executor:
            self._executor.close()
            self._executor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def key(self, candidate: Candidate) -> str:
        """The rule's fingerprint (raises DSLError for text that does not parse)."""
        return rule_key(candidate.text)

    def _check_fidelity(self, fidelity: str) -> None:
        if fidelity not in self.fidelities:
            raise ValueError(f"unknown fidelity {fidelity!r}; choose one of {', '.join(self.fidelities)}")

    # -- baselines -----------------------------------------------------------------
    def _baseline_id(self, task: str, fidelity: str) -> str:
        payload = {"rule": self._baseline_key, "task": task, "fidelity": fidelity,
                   "lrs": [float(f"{x:.12g}") for x in self._lrs], "seeds": list(self._seeds),
                   "config": self.config_hash}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]

    def _cached_baseline(self, task: str, fidelity: str) -> SweepSummary | None:
        blob = self.cache.get_blob("baseline", self._baseline_id(task, fidelity))
        return None if blob is None else SweepSummary.model_validate(blob)

    def baselines(self, fidelity: str, tasks: Sequence[str] | None = None) -> dict[str, SweepSummary]:
        """The tuned-baseline sweeps (computed now where not cached). A failed one has ``error`` set."""
        self._check_fidelity(fidelity)
        tasks = list(tasks or self.config.tasks)
        return self._ensure_baselines(fidelity, tasks, extra_jobs=[])[0]

    def _ensure_baselines(self, fidelity: str, tasks: list[str], extra_jobs: list[SweepJob],
                          on_extra: Callable[[int, Outcome, dict[str, SweepSummary]], None] | None = None
                          ) -> tuple[dict[str, SweepSummary], list[Outcome]]:
        """Baselines for ``tasks`` plus the outcomes of ``extra_jobs``, all in one executor batch.

        ``on_extra(j, outcome, baselines)`` is called once per extra job as soon as it has finished
        and every baseline is known (baseline jobs are dispatched first, so that is early)."""
        have = {t: s for t in tasks if (s := self._cached_baseline(t, fidelity)
                                        or self._failed_baselines.get(self._baseline_id(t, fidelity)))}
        missing = [t for t in tasks if t not in have]
        jobs = [SweepJob(self.baseline_source, (t,), self._lrs, self._seeds, fidelity, False,
                         self.config.torch_threads, self.config.split) for t in missing]
        limits = [self.config.baseline_timeout_s] * len(jobs) + [self.config.timeout_s] * len(extra_jobs)
        all_jobs = jobs + extra_jobs
        nb = len(jobs)
        waiting: list[tuple[int, Outcome]] = []   # extra jobs done before the last baseline
        told: set[int] = set()

        def tell(j: int, o: Outcome) -> None:
            told.add(j)
            on_extra(j, o, have)  # type: ignore[misc]

        def on_done(i: int, o: Outcome) -> None:
            if i < nb:
                have[missing[i]] = self._take_baseline(missing[i], fidelity, o)
            elif on_extra is not None:
                waiting.append((i - nb, o))
            if on_extra is not None and len(have) == len(tasks):
                while waiting:
                    tell(*waiting.pop(0))

        try:
            outcomes = self.executor.map(run_sweep_job, all_jobs, limits, on_done=on_done) if all_jobs else []
        except Exception as e:  # noqa: BLE001 - e.g. a lost Ray cluster: every unit fails, the caller goes on
            why = f"the {self.executor.name} executor failed: {type(e).__name__}: {e}"
            outcomes = [Outcome("error", reason=why) for _ in all_jobs]
        for t, o in zip(missing, outcomes[:nb]):
            if t not in have:                      # not reported (the executor failed)
                have[t] = self._take_baseline(t, fidelity, o)
        if on_extra is not None:
            for j, o in enumerate(outcomes[nb:]):
                if j not in told:
                    tell(j, o)
        return have, outcomes[nb:]

    def _take_baseline(self, t: str, fidelity: str, o: Outcome) -> SweepSummary:
        """A finished baseline job's summary, cached when it succeeded (failures kept in memory)."""
        if o.ok:
            s = o.value[0]
            if not s.failed:
                self.cache.put_blob("baseline", self._baseline_id(t, fidelity), s.model_dump(mode="json"))
            else:
                if not s.error:
                    s = s.model_copy(update={"error": "it diverged at every learning rate of the grid "
                                             f"{_grid_text(self._lrs)}: the grid is wrong for this task"})
                self._failed_baselines[self._baseline_id(t, fidelity)] = s
            return s
        return SweepSummary(task=t, lrs=list(self._lrs), seeds=list(self._seeds),
                            error=f"{o.status}: {o.reason}", seconds=o.seconds)

    # -- evaluation ------------------------------------------------------------------
    def evaluate(self, candidates: list[Candidate], fidelity: str,
                 on_result: OnResult = None) -> list[EvalResult]:
        """One result per candidate, in order; never raises for a bad candidate.

        ``on_result(index, result)`` is called as soon as a candidate's result is final: invalid
        candidates and cache hits at once, a trained one when its last work unit has returned (its
        result is in the cache by then), a twin of a trained one (same fingerprint) with it."""
        self._check_fidelity(fidelity)
        emit = ResultStream(on_result)
        results: list[EvalResult | None] = [None] * len(candidates)
        todo: dict[str, _Pending] = {}          # key -> first candidate with that key
        dupes: dict[str, list[int]] = {}        # key in todo -> indices of later candidates with it
        for i, cand in enumerate(candidates):
            t0 = time.perf_counter()
            if cand.kind != "rule":
                results[i] = EvalResult(key="", fidelity=fidelity, status=Status.invalid,
                                        reason=f"RuleEvaluator scores rules, got a {cand.kind!r} candidate")
                emit(i, results[i])
                continue
            try:
                program = dsl.parse(cand.text)
            except DSLError as e:
                results[i] = EvalResult(key="text:" + hashlib.sha256(cand.text.encode()).hexdigest()[:32],
                                        fidelity=fidelity, status=Status.invalid, reason=str(e),
                                        seconds=time.perf_counter() - t0)
                emit(i, results[i])
                continue
            key = rule_key(program)
            if key in todo:
                dupes.setdefault(key, []).append(i)
                continue
            hit = self.cache.get(key, fidelity, self.config_hash)
            if hit is not None:
                results[i] = hit
                emit(i, hit)
                continue
            todo[key] = _Pending(i, program.source(), key, {})

        def final(p: _Pending, r: EvalResult) -> None:
            emit(p.index, r)
            for i in dupes.get(p.key, ()):
                results[i] = r.model_copy(update={"cached": True}, deep=True)
                emit(i, results[i])

        if todo:
            self._train(list(todo.values()), fidelity, results, final)
        emit.raise_pending()
        return results  # type: ignore[return-value]

    def _train(self, pending: list[_Pending], fidelity: str, results: list,
               on_final: Callable[[_Pending, EvalResult], None] | None = None) -> None:
        """Train ``pending`` (and any missing baselines) in one executor batch. Each candidate is
        finished, cached and reported (``on_final``) as soon as its last work unit returns."""
        tasks = list(self.config.tasks)
        split = len(pending) < getattr(self.executor, "parallelism", 1) and len(tasks) > 1
        units: list[tuple[_Pending, SweepJob]] = []
        for p in pending:
            groups = [(t,) for t in tasks] if split else [tuple(tasks)]
            units += [(p, SweepJob(p.source, g, self._lrs, self._seeds, fidelity, True,
                                   self.config.torch_threads, self.config.split)) for g in groups]
        left: dict[int, int] = {}               # candidate index -> its work units still out
        for p, _ in units:
            left[p.index] = left.get(p.index, 0) + 1
        self.trained += len(pending)

        def on_unit(j: int, o: Outcome, base: dict[str, SweepSummary]) -> None:
            p, job = units[j]
            p.seconds += o.seconds
            if o.ok:
                for s in o.value:
                    p.summaries[s.task] = s
            else:
                status = Status.timeout if o.status == "timeout" else Status.error
                p.killed = p.killed or {}
                unit = f"{'task' if len(job.tasks) == 1 else 'tasks'} {', '.join(job.tasks)}"
                for t in job.tasks:
                    p.summaries[t] = SweepSummary(task=t, lrs=list(job.lrs), seeds=list(job.seeds),
                                                  error=f"{o.reason} (while running {unit})",
                                                  seconds=o.seconds)
                    p.killed[t] = status
            left[p.index] -= 1
            if left[p.index] == 0:               # the candidate's last unit: final now
                r = self._finish(p, fidelity, tasks, base)
                results[p.index] = r
                if r.status in (Status.ok, Status.diverged):
                    self.cache.put(r, self.config_hash)
                if on_final is not None:
                    on_final(p, r)

        self._ensure_baselines(fidelity, tasks, [j for _, j in units], on_extra=on_unit)

    def _finish(self, p: _Pending, fidelity: str, tasks: list[str],
                base: dict[str, SweepSummary]) -> EvalResult:
        """Turn a candidate's sweep summaries into its EvalResult (first failing task decides status)."""
        out: dict[str, TaskResult] = {}
        failure: tuple[Status, str] | None = None
        for t in tasks:
            s = p.summaries.get(t)
            if s is None:
                continue  # skipped after an earlier failure
            killed = (p.killed or {}).get(t)
            if killed is not None:
                out[t] = failed_task_result(s, killed, s.error)
                failure = failure or (killed, s.error)
            elif s.error:
                out[t] = failed_task_result(s, Status.error, s.error)
                failure = failure or (Status.error, f"task {t} raised {s.error}")
            elif s.best is None:
                n = len(s.lrs)
                why = f"diverged at all {n} learning rates {_grid_text(s.lrs)} on task {t}"
                out[t] = failed_task_result(s, Status.diverged, why)
                failure = failure or (Status.diverged, why)
            elif base[t].error:
                why = f"the {self.config.baseline} baseline failed on task {t}: {base[t].error}"
                out[t] = failed_task_result(s, Status.error, why)
                failure = failure or (Status.error, why)
            else:
                out[t] = task_result(s, base[t], self.config.score_clip)
        if failure is not None:
            return EvalResult(key=p.key, fidelity=fidelity, score=WORST_SCORE, status=failure[0],
                              reason=failure[1], tasks=out, seconds=p.seconds)
        score = float(np.mean([out[t].score for t in tasks]))
        return EvalResult(key=p.key, fidelity=fidelity, score=score, status=Status.ok, tasks=out,
                          seconds=p.seconds)


def _grid_text(lrs: Sequence[float]) -> str:
    return f"[{lrs[0]:.3g} .. {lrs[-1]:.3g}]" if len(lrs) > 1 else f"[{lrs[0]:.3g}]"


__all__ = ["RuleEvaluator", "RuleEvalConfig", "LrGrid", "SweepJob", "SweepSummary", "run_sweep_job",
           "summarize", "task_score", "rule_key", "library_source", "baseline_source"]
