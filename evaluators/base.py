"""The one evaluator interface, shared by update rules and prompts.

Candidates and results are pydantic models (they cross process, Ray and disk
boundaries). ``Evaluator.evaluate`` takes a batch so an implementation can
vectorize; a failing candidate gets a failing status and ``WORST_SCORE``, never
an exception that stops the batch.

Results stream: ``evaluate(candidates, fidelity, on_result)`` calls
``on_result(index, result)`` as soon as one candidate's result is final (cache
hits and invalid candidates at once, trained ones when their last work unit
returns), so a caller can persist each finished evaluation without waiting for
the batch; a process killed mid-batch then loses only the evaluations still
running. The returned list is the same with or without ``on_result``.
"""
from __future__ import annotations

import abc
import inspect
from collections.abc import Callable
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: The score of every failed candidate (scores are "higher is better").
WORST_SCORE = -1e9


class Status(str, Enum):  # noqa: UP042 - str() of a member stays "Status.ok" as before
    ok = "ok"
    invalid = "invalid"      # refused by the DSL checker / prompt validator
    diverged = "diverged"    # NaN/inf or loss blow-up
    timeout = "timeout"      # killed past its time limit
    error = "error"          # raised while running


class Candidate(BaseModel):
    """What the search proposes: DSL source for ``rule``, prompt text for ``prompt``, or the text of
    any registered kind (the name is the kind's registered name; evaluators check what they accept)."""
    kind: str = "rule"
    text: str
    meta: dict[str, Any] = Field(default_factory=dict)


class TaskResult(BaseModel):
    # NaN/inf (a diverged metric) survive a JSON round trip (SQLite caches, run stores).
    model_config = ConfigDict(ser_json_inf_nan="constants")

    task: str
    metric: float                 # the task's own metric (e.g. final validation loss)
    metric_name: str = "val_loss"
    higher_is_better: bool = False
    baseline: float | None = None  # the tuned AdamW (or initial-prompt) metric
    score: float = WORST_SCORE    # relative score on this task, higher is better
    best_lr: float | None = None  # the tuned learning rate
    status: Status = Status.ok
    reason: str = ""
    curve: list[float] | None = None  # validation (or train) loss over the run, for plots
    extra: dict[str, Any] = Field(default_factory=dict)


class EvalResult(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="constants")

    key: str                      # cache key: DSL fingerprint (rules) or normalized-text hash (prompts)
    fidelity: str
    score: float = WORST_SCORE
    status: Status = Status.ok
    reason: str = ""
    tasks: dict[str, TaskResult] = Field(default_factory=dict)
    seconds: float = 0.0
    tokens: int = 0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status == Status.ok

    @property
    def tasks_won(self) -> int:
        """Tasks where the candidate scored above the baseline (task score > 0), next to the mean:
        a ranking can prefer a rule that wins most tasks over one that wins big on one."""
        return self.tasks_won_by(0.0)

    @property
    def tasks_scored(self) -> int:
        """Tasks with an ok score (the denominator of ``tasks_won``)."""
        return sum(1 for t in self.tasks.values() if t.status == Status.ok)

    def tasks_won_by(self, margin: float) -> int:
        """Tasks whose score exceeds ``margin`` (e.g. a noise level)."""
        return sum(1 for t in self.tasks.values() if t.status == Status.ok and t.score > margin)

    def net_wins_by(self, margin: float) -> int:
        """Tasks won by more than ``margin`` minus tasks lost by more than it (a failed task is lost):
        a candidate that wins one task and loses another has shown nothing over the baseline."""
        lost = sum(1 for t in self.tasks.values() if t.status != Status.ok or t.score < -margin)
        return self.tasks_won_by(margin) - lost


#: ``on_result(index, result)``: called once per candidate as soon as its result is final.
OnResult = Callable[[int, "EvalResult"], None] | None


class ResultStream:
    """Calls a caller's ``on_result`` for an evaluator, once per index, shielding the batch from it.

    An exception raised by ``on_result`` must not turn into failed evaluations (an executor
    error path would mark the whole batch failed), so it is kept, later calls are skipped, and
    :meth:`raise_pending` re-raises it once the batch is done (its results are cached by then).
    """

    def __init__(self, on_result: OnResult):
        self.fn = on_result
        self.sent: set[int] = set()
        self.error: BaseException | None = None

    def __call__(self, index: int, result: "EvalResult") -> None:
        if self.fn is None or self.error is not None or index in self.sent:
            return
        self.sent.add(index)
        try:
            self.fn(index, result)
        except Exception as e:  # noqa: BLE001 - re-raised by raise_pending
            self.error = e

    def raise_pending(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise err


def accepts_on_result(evaluator: "Evaluator") -> bool:
    """Whether ``evaluator.evaluate`` takes ``on_result`` (evaluators written before it did not)."""
    try:
        params = inspect.signature(evaluator.evaluate).parameters
    except (TypeError, ValueError):
        return False
    return "on_result" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


class Evaluator(abc.ABC):
    """Scores batches of candidates at a fidelity (cheapest first in ``fidelities``)."""

    kind: str = "rule"
    fidelities: tuple[str, ...] = ("tiny", "small", "full")

    @abc.abstractmethod
    def key(self, candidate: Candidate) -> str:
        """The cache key; functionally identical candidates share it."""

    @abc.abstractmethod
    def evaluate(self, candidates: list[Candidate], fidelity: str,
                 on_result: OnResult = None) -> list[EvalResult]:
        """One result per candidate, in order. Never raises for a bad candidate.

        ``on_result(index, result)``, when given, is called once per candidate as soon as its
        result is final (see the module docstring), before ``evaluate`` returns."""

    def close(self) -> None:  # noqa: B027 - a no-op by default: not every evaluator holds resources
        """Release what the evaluator holds (workers, cache connections); it is not used after."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
