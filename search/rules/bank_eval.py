"""Evaluation on the sampled task bank: a task set that changes per generation, a robust aggregate.

``BankEvaluator`` is a ``RuleEvaluator`` whose task list can be switched (``set_tasks``): the search
trains on each generation's fresh draw from the bank. Every task list is its own ``RuleEvaluator``
(so its own config hash: cached results and baselines are keyed by the task specs) sharing one
executor and one cache file. The key of a candidate is its fingerprint, independent of the tasks,
so the engine's novelty check and duplicate reuse work across generations.

Aggregate: with ``aggregate = "iqm"`` the score is the interquartile mean of the task scores,
``IQM(x) = mean(sorted(x)[k : n - k])`` with ``k = floor(n / 4)`` (the plain mean for n < 4), the
same as ``evaluators.estimate(..., aggregate="iqm")``: a few degenerate sampled tasks (a loss near 0
that clips at +-task_clip) cannot decide a candidate's score.
"""
from __future__ import annotations

from collections.abc import Sequence

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


class BankEvaluator(Evaluator):
    """Scores rules on a switchable task list with a chosen aggregate (see the module docstring)."""

    kind = "rule"

    def __init__(self, config: RuleEvalConfig, aggregate: str = "iqm", executor=None):
        if aggregate not in ("iqm", "mean"):
            raise ValueError(f"aggregate {aggregate!r}: use 'iqm' or 'mean'")
        self.base = config
        self.aggregate = aggregate
        self.cache = EvalCache(config.cache_dir)
        self._owner = RuleEvaluator(config, executor=executor, cache=self.cache)
        self.fidelities = self._owner.fidelities
        self.inner = self._owner
        self.tasks = list(config.tasks)
        self._used: list[RuleEvaluator] = [self._owner]

    @property
    def executor(self):
        return self._owner.executor

    @property
    def trained(self) -> int:
        """Candidates actually trained (not served from a cache), over every task list."""
        return sum(e.trained for e in self._used)

    def set_tasks(self, tasks: Sequence[str]) -> None:
        """Train on ``tasks`` from now on (validated like any ``RuleEvalConfig.tasks``)."""
        tasks = list(tasks)
        if tasks == self.tasks:
            return
        cfg = RuleEvalConfig.model_validate({**self.base.model_dump(), "tasks": tasks})
        self.inner = RuleEvaluator(cfg, executor=self._owner.executor, cache=self.cache)
        self._used.append(self.inner)
        self.tasks = tasks

    def key(self, candidate: Candidate) -> str:
        return self._owner.key(candidate)

    def evaluate(self, candidates: list[Candidate], fidelity: str, on_result=None) -> list[EvalResult]:
        emit = None if on_result is None else (lambda i, r: on_result(i, aggregate_result(r, self.aggregate)))
        results = self.inner.evaluate(candidates, fidelity, on_result=emit)
        return [aggregate_result(r, self.aggregate) for r in results]

    def close(self) -> None:
        self._owner.close()


__all__ = ["BankEvaluator", "iqm", "aggregate_result"]
