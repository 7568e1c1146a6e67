"""Evaluation on task lists that change: per generation (the sampled bank) and per fidelity (rungs).

``TaskSetEvaluator`` scores rules like a ``RuleEvaluator``, but on a task list that can be switched
(``set_tasks``: the search trains on each generation's fresh draw from the bank) and that grows with
the fidelity (``rungs``: ``{"small": ["lm_m"]}`` adds lm_m to every evaluation at ``small`` and above,
the Lion paper's funnel from the cheapest tasks to larger ones). Every distinct task list is its own
``RuleEvaluator`` (so its own config hash: cached results and baselines are keyed by the task specs)
sharing one executor and one cache file. The key of a candidate is its fingerprint, independent of
the tasks, so the engine's novelty check and duplicate reuse work across generations and rungs.

Aggregate: with ``aggregate = "iqm"`` the score is the interquartile mean of the task scores,
``IQM(x) = mean(sorted(x)[k : n - k])`` with ``k = floor(n / 4)`` (the plain mean for n < 4), the
same as ``evaluators.estimate(..., aggregate="iqm")``: a few degenerate sampled tasks (a loss near 0
that clips at +-task_clip) cannot decide a candidate's score.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from evaluators import Candidate, EvalCache, EvalResult, Evaluator, RuleEvalConfig, RuleEvaluator, Status


def iqm(scores: Sequence[float]) -> float:
    """The interquartile mean (see the module docstring)."""
    x = np.sort(np.asarray(list(scores), dtype=float))
    k = len(x) // 4
    return float(x[k:len(x) - k].mean())


def aggregate_result(r: EvalResult, aggregate: str) -> EvalResult:
    """``r`` with its score re-aggregated over its ok task scores (unchanged for ``mean`` or a failure)."""
    if aggregate == "mean" or r.status != Status.ok or not r.tasks:
        return r
    scores = [t.score for t in r.tasks.values() if t.status == Status.ok]
    return r.model_copy(update={"score": iqm(scores)}) if scores else r


def rung_tasks(rungs: Mapping[str, Sequence[str]], fidelities: Sequence[str], fidelity: str) -> list[str]:
    """The tasks ``rungs`` adds at ``fidelity``: those of its own rung and every cheaper one."""
    upto = list(fidelities)[: list(fidelities).index(fidelity) + 1] if fidelity in fidelities else [fidelity]
    return [t for f in upto for t in rungs.get(f, ())]


class TaskSetEvaluator(Evaluator):
    """Scores rules on a switchable task list that grows by rung (see the module docstring).

    ``banked``: the task list changes per generation (a bank campaign), so scores of different
    generations are not comparable and racing across seed blocks is refused (``with_seeds``)."""

    kind = "rule"

    def __init__(self, config: RuleEvalConfig, aggregate: str = "iqm", executor=None, *,
                 rungs: Mapping[str, Sequence[str]] | None = None, banked: bool = True,
                 cache: EvalCache | None = None):
        if aggregate not in ("iqm", "mean"):
            raise ValueError(f"aggregate {aggregate!r}: use 'iqm' or 'mean'")
        self.config = config
        self.aggregate = aggregate
        self.banked = banked
        self.rungs = {f: list(ts) for f, ts in (rungs or {}).items() if ts}
        self.cache = cache if cache is not None else EvalCache(config.cache_dir)
        self._owner = RuleEvaluator(config, executor=executor, cache=self.cache)
        self.fidelities = self._owner.fidelities
        unknown = [f for f in self.rungs if f not in self.fidelities]
        if unknown:
            raise ValueError(f"rungs: unknown fidelity {unknown[0]!r}; known: {', '.join(self.fidelities)}")
        self.tasks = list(config.tasks)
        self._by_tasks: dict[tuple[str, ...], RuleEvaluator] = {tuple(self.tasks): self._owner}

    @property
    def executor(self):
        return self._owner.executor

    @property
    def trained(self) -> int:
        """Candidates actually trained (not served from a cache), over every task list."""
        return sum(e.trained for e in self._by_tasks.values())

    def set_tasks(self, tasks: Sequence[str]) -> None:
        """Train on ``tasks`` (plus each fidelity's rung tasks) from now on."""
        self.tasks = list(tasks)

    def tasks_at(self, fidelity: str) -> list[str]:
        """What an evaluation at ``fidelity`` trains on: the current tasks, then the rungs' up to it."""
        return list(dict.fromkeys(self.tasks + rung_tasks(self.rungs, self.fidelities, fidelity)))

    def inner(self, fidelity: str) -> RuleEvaluator:
        """The ``RuleEvaluator`` of ``fidelity``'s task list (made once, validated like any config)."""
        tasks = tuple(self.tasks_at(fidelity))
        if tasks not in self._by_tasks:
            cfg = RuleEvalConfig.model_validate({**self.config.model_dump(), "tasks": list(tasks)})
            self._by_tasks[tasks] = RuleEvaluator(cfg, executor=self._owner.executor, cache=self.cache)
        return self._by_tasks[tasks]

    def with_seeds(self, seeds: Sequence[int]) -> "TaskSetEvaluator | None":
        """The same task lists and rungs on other training seeds, sharing workers and cache (a race's
        seed block); None for a bank campaign (its task list changes per generation)."""
        if self.banked:
            return None
        cfg = self.config.model_copy(update={"seeds": list(seeds)})
        out = TaskSetEvaluator(cfg, self.aggregate, self._owner.executor, rungs=self.rungs, banked=False,
                               cache=self.cache)
        out.set_tasks(self.tasks)
        return out

    def key(self, candidate: Candidate) -> str:
        return self._owner.key(candidate)

    def evaluate(self, candidates: list[Candidate], fidelity: str, on_result=None) -> list[EvalResult]:
        emit = None if on_result is None else (lambda i, r: on_result(i, aggregate_result(r, self.aggregate)))
        results = self.inner(fidelity).evaluate(candidates, fidelity, on_result=emit)
        return [aggregate_result(r, self.aggregate) for r in results]

    def close(self) -> None:
        self._owner.close()


__all__ = ["TaskSetEvaluator", "iqm", "aggregate_result", "rung_tasks"]
