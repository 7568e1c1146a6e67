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

Options (all off by default, so default configs score exactly as before):
``wd_grid`` tunes weight decay next to the lr (the grid is lr x wd, one copy per
point and seed in the same vectorized run; the tuned wd is in each task's extras
as ``best_wd`` / ``baseline_wd``); ``halving`` prunes that grid by successive
halving inside the run (``SuccessiveHalving.rungs``); ``task_clip`` (e.g. 0.5)
clips each task's log ratio before the mean so no single task dominates (the
unclipped value is kept as ``log_ratio``). ``EvalResult.tasks_won`` counts the
tasks where the candidate beat the baseline, next to the mean.

Tasks are registered names or a user's ``"package.module:factory"``
(``proxies.resolve_task``); the pool's workers get this process's ``sys.path``
with each job so they import such a module the same way.

The overall score is the mean of the task scores. A rule that diverges at
every learning rate of a task gets ``WORST_SCORE`` (status ``diverged``), and
the evaluation of its remaining tasks is skipped.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dsl
import proxies
from dsl import DSLError

from .base import WORST_SCORE, Candidate, EvalResult, Evaluator, OnResult, ResultStream, Status, TaskResult
from .cache import EvalCache
from .executors import Executor, Outcome, available_cores, make_executor
from .rule_config import (
    TUNING_PRESETS,
    LrGrid,
    RuleEvalConfig,
    SuccessiveHalving,
    WdGrid,
    baseline_source,
    library_source,
    rule_key,
    with_tuning_preset,
)
from .scoring import METRIC_FLOOR, failed_task_result, log_ratio, mean_score, task_result, task_score, tasks_won
from .sweeps import SweepJob, SweepSummary, run_sweep_job, summarize


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
        self.config = config or RuleEvalConfig()
        self.fidelities = tuple(getattr(proxies, "FIDELITIES", ("tiny", "small", "full")))
        self._executor = executor
        self._owns_executor = executor is None
        self.cache = cache if cache is not None else EvalCache(self.config.cache_dir)
        self.config_hash = self.config.result_hash()
        self.baseline_source = baseline_source(self.config.baseline)
        self._baseline_key = rule_key(self.baseline_source)
        self._lrs = tuple(self.config.lr_grid.lrs())
        self._task_hashes: dict[str, str] = {}   # task -> result_hash of the protocol on it alone
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

    def key(self, candidate: Candidate) -> str:
        """The rule's fingerprint (raises DSLError for text that does not parse)."""
        return rule_key(candidate.text)

    def _check_fidelity(self, fidelity: str) -> None:
        if fidelity not in self.fidelities:
            raise ValueError(f"unknown fidelity {fidelity!r}; choose one of {', '.join(self.fidelities)}")

    def _job(self, source: str, tasks: tuple[str, ...], fidelity: str, stop_on_failure: bool) -> SweepJob:
        """The work unit sweeping ``source`` on ``tasks`` under this config's tuning protocol."""
        c = self.config
        wd = c.wd_grid
        return SweepJob(source, tasks, self._lrs, self._seeds, fidelity, stop_on_failure, c.torch_threads,
                        c.split, wd_grid=None if wd is None else tuple(wd.values),
                        wd_relative=bool(wd and wd.relative),
                        rungs=() if c.halving is None else tuple(c.halving.rungs),
                        sys_path=tuple(sys.path) if any(map(proxies.is_task_spec, tasks)) else ())

    # -- baselines -----------------------------------------------------------------
    def _baseline_id(self, task: str, fidelity: str) -> str:
        """The cache key of one task's baseline sweep: the protocol as it applies to that task alone,
        so evaluators whose task lists overlap (a verify on a subset, say) share the sweep."""
        alone = self._task_hashes.get(task)
        if alone is None:
            alone = self._task_hashes[task] = self.config.model_copy(update={"tasks": [task]}).result_hash()
        payload = {"rule": self._baseline_key, "task": task, "fidelity": fidelity,
                   "lrs": [float(f"{x:.12g}") for x in self._lrs], "seeds": list(self._seeds),
                   "config": alone, "per_task": 1}
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
        jobs = [self._job(self.baseline_source, (t,), fidelity, False) for t in missing]
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
            units += [(p, self._job(p.source, g, fidelity, True)) for g in groups]
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
                out[t] = task_result(s, base[t], self.config.clip, raw=self.config.task_clip is not None)
        if failure is not None:
            return EvalResult(key=p.key, fidelity=fidelity, score=WORST_SCORE, status=failure[0],
                              reason=failure[1], tasks=out, seconds=p.seconds)
        score = mean_score([out[t].score for t in tasks])
        return EvalResult(key=p.key, fidelity=fidelity, score=score, status=Status.ok, tasks=out,
                          seconds=p.seconds)


def _grid_text(lrs: Sequence[float]) -> str:
    return f"[{lrs[0]:.3g} .. {lrs[-1]:.3g}]" if len(lrs) > 1 else f"[{lrs[0]:.3g}]"


# The config, sweep and scoring names are re-exported here: ``evaluators.rules`` was one module before.
__all__ = ["RuleEvaluator", "RuleEvalConfig", "LrGrid", "WdGrid", "SuccessiveHalving", "TUNING_PRESETS", "SweepJob",
           "SweepSummary",
           "run_sweep_job", "summarize", "task_score", "log_ratio", "mean_score", "tasks_won", "task_result",
           "failed_task_result", "METRIC_FLOOR", "rule_key", "library_source", "baseline_source",
           "with_tuning_preset"]
