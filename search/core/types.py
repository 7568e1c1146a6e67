"""The search's data: candidates in the population, what operators propose, planned jobs, counters.

Plain dataclasses shared by the engine, the plug-in contracts (``search.core.plugins``) and
every kind, operator and strategy; planned jobs grouped by operator (``jobs_by_operator``); and an
RNG's state as JSON (the engine's and the operator bandit's checkpoints).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from evaluators.base import WORST_SCORE, EvalResult, Status


@dataclass
class Individual:
    """One evaluated (or being evaluated) candidate in the search."""
    id: int                              # creation order (the "birth index"); unique in the run
    text: str                            # canonical text (rules: Program.source())
    kind: str = "rule"
    key: str = ""                        # evaluator.key(): fingerprint / normalized-text hash
    parents: tuple[int, ...] = ()
    operator: str = "seed"
    generation: int = 0
    results: dict[str, EvalResult] = field(default_factory=dict)  # fidelity -> result
    children: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # kind facts (size, n_state, ...), raw reply
    level: int = -1                      # index of the highest fidelity with a result (-1: none)
    score: float = WORST_SCORE           # score at that fidelity
    screen_score: float = WORST_SCORE    # score at the cheapest fidelity
    validation: EvalResult | None = None  # score on the validation tasks (search.core.selection)

    @property
    def birth(self) -> int:
        return self.id

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.status == Status.ok for r in self.results.values())

    def rank_key(self) -> tuple[int, float]:
        """Final ranking: highest fidelity reached, then the score there."""
        return (self.level, self.score)


@dataclass
class Proposal:
    """What an operator returns for one child. ``text=None`` means nothing usable."""
    text: str | None
    operator: str
    parents: tuple[int, ...]
    raw: str | None = None          # the LLM's raw reply(ies), recorded in the store
    reason: str = ""                # why it is not usable (recorded; counted as invalid)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    """A planned child: which operator, which parents (len == operator arity)."""
    operator: str
    parents: list[Individual]


def jobs_by_operator(jobs: list[Job]) -> list[tuple[str, list[int]]]:
    """(operator, the indices of its jobs) per operator of ``jobs``, in the order of each one's first job:
    an operator is called once per generation, with all its slots."""
    by_op: dict[str, list[int]] = {}
    for j, job in enumerate(jobs):
        by_op.setdefault(job.operator, []).append(j)
    return list(by_op.items())


class InvalidCandidate(ValueError):
    """Raised by ``KindPlugin.normalize`` for a proposal that cannot be evaluated."""


class StoreError(RuntimeError):
    """A run directory or database that cannot be used as asked."""


class RunExistsError(StoreError):
    pass


@dataclass
class Stats:
    """Counters for the live view and the summary."""
    proposals: dict[str, int] = field(default_factory=dict)        # by operator
    invalid: dict[str, int] = field(default_factory=dict)          # by operator
    duplicates: int = 0
    reused: int = 0
    llm_proposals: int = 0
    llm_valid: int = 0
    llm_errors: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RunSummary:
    run_dir: str
    evaluations: int
    used: float
    generations: int
    wall_seconds: float
    llm_calls: int
    best_id: int | None
    best_score: float
    best_fidelity: str | None
    best_text: str
    done_reason: str
    stats: dict

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, default=str)


def rng_state(rng: random.Random) -> list:
    """``rng``'s state as a JSON list (``set_rng_state`` restores it)."""
    v, internal, gauss = rng.getstate()
    return [v, list(internal), gauss]


def set_rng_state(rng: random.Random, s: list) -> None:
    """Restore a state saved by ``rng_state`` (after a JSON round trip)."""
    rng.setstate((s[0], tuple(s[1]), s[2]))


class Progress:
    """What the engine reports to while it runs (search.report.live implements it): ``start`` and
    ``stop`` around the run, ``update`` after each finished evaluation and each generation,
    ``log`` for each event. Every hook does nothing by default."""

    def start(self, engine: Any) -> None:
        pass

    def update(self, engine: Any) -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def stop(self, engine: Any) -> None:
        pass

