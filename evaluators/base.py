"""The one evaluator interface, shared by update rules and prompts.

Candidates and results are pydantic models (they cross process, Ray and disk
boundaries). ``Evaluator.evaluate`` takes a batch so an implementation can
vectorize; a failing candidate gets a failing status and ``WORST_SCORE``, never
an exception that stops the batch.
"""
from __future__ import annotations

import abc
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The score of every failed candidate (scores are "higher is better").
WORST_SCORE = -1e9


class Status(str, Enum):
    ok = "ok"
    invalid = "invalid"      # refused by the DSL checker / prompt validator
    diverged = "diverged"    # NaN/inf or loss blow-up
    timeout = "timeout"      # killed past its time limit
    error = "error"          # raised while running


class Candidate(BaseModel):
    """What the search proposes: DSL source for ``rule``, prompt text for ``prompt``."""
    kind: Literal["rule", "prompt"] = "rule"
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


class Evaluator(abc.ABC):
    """Scores batches of candidates at a fidelity (cheapest first in ``fidelities``)."""

    kind: str = "rule"
    fidelities: tuple[str, ...] = ("tiny", "small", "full")

    @abc.abstractmethod
    def key(self, candidate: Candidate) -> str:
        """The cache key; functionally identical candidates share it."""

    @abc.abstractmethod
    def evaluate(self, candidates: list[Candidate], fidelity: str) -> list[EvalResult]:
        """One result per candidate, in order. Never raises for a bad candidate."""
