"""``Context``: the engine's state as operators and strategies see it (read-only views + calls)."""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .campaign import Campaign
from .plugins import KindPlugin, Operator
from .types import Individual

if TYPE_CHECKING:
    from evaluators.base import Evaluator

    from .engine import Engine


class Context:
    """The engine's state as seen by operators and strategies."""

    def __init__(self, engine: "Engine"):
        self._e = engine

    # read-only views
    @property
    def campaign(self) -> Campaign:
        return self._e.campaign

    @property
    def kind(self) -> KindPlugin:
        return self._e.kind

    @property
    def rng(self) -> random.Random:
        return self._e.rng

    @property
    def population(self) -> list[Individual]:
        return self._e.population

    @property
    def history(self) -> dict[int, Individual]:
        """Every individual with at least one result, by id."""
        return self._e.individuals

    @property
    def fidelities(self) -> tuple[str, ...]:
        return self._e.fidelities

    @property
    def generation(self) -> int:
        return self._e.generation

    @property
    def evaluator(self) -> "Evaluator":
        return self._e.evaluator

    @property
    def state(self) -> dict[str, Any]:
        """Free JSON-able state for operators (checkpointed)."""
        return self._e.op_state

    def fitness(self, ind: Individual) -> float:
        """Selection fitness: score at the highest fidelity reached, or at the screen level."""
        if self.campaign.search.selection_fidelity == "screen":
            return ind.screen_score
        return ind.score

    def top(self, k: int, pool: Sequence[Individual] | None = None) -> list[Individual]:
        """The k best (final ranking) among ``pool`` (default: everything evaluated)."""
        items = [i for i in (pool if pool is not None else self.history.values())
                 if i.level >= 0 and i.operator != "simplify"]
        return sorted(items, key=lambda i: (i.rank_key(), -i.id), reverse=True)[:k]

    def choose_operator(self, arity: int | None = None) -> str:
        return self._e.choose_operator(arity)

    def choose_for(self, name: str) -> str:
        """The operator for a slot planned for ``name``: ``name`` itself, or with an operator bandit
        (``[operators.bandit]``) its draw among ``name`` and the random operators."""
        return self._e.choose_for(name)

    def operator(self, name: str) -> Operator:
        return self._e.get_operator(name)

    def llm_available(self) -> bool:
        return self._e.llm_available()

    def llm_chat(self, requests: list, purpose: str = "") -> list | None:
        """Send chat requests through the campaign's LLM; None when LLM use is over."""
        return self._e.llm_chat(requests, purpose)

    def event(self, kind: str, message: str, **data: Any) -> None:
        self._e.event(kind, message, **data)
