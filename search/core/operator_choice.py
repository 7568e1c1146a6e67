"""The engine's side of the operator bandit (search.core.bandit): which operators are arms, and
what each proposal of a generation earned (reward) and cost.

Every proposal the engine gets from an operator is an :class:`Attempt` (the first proposal of
a planned child and each re-mutation after a refused one; an LLM slot whose LLM was not usable
is no attempt). After the generation's funnel, :func:`observations` turns them into bandit
observations: reward = the child's screening score minus its best parent's, clipped at 0
(0 for an invalid or duplicate proposal, or a failed evaluation); cost = the seconds the
engine spent on it (waiting for the LLM, its share of the operator call, its own training) or,
with ``cost = "units"``, its evaluation units plus ``llm_call_units`` for an LLM proposal.
"""
from __future__ import annotations

from dataclasses import dataclass

from evaluators.base import WORST_SCORE

from .bandit import MIN_COST, Observation, OperatorBandit
from .plugins import EngineView
from .types import Individual


@dataclass
class Attempt:
    """One proposal of a generation and what the engine made of it."""
    operator: str
    child: Individual | None      # the new candidate, or None (invalid, refused duplicate)
    duplicate: bool = False       # a key duplicate kept on the last retry (reuses a result)
    llm: bool = False             # made by an LLM operator
    seconds: float = 0.0          # operator time (LLM wait included), this proposal's share


def make_bandit(engine: EngineView) -> OperatorBandit:
    """The campaign's bandit over its operators (``fixed`` mode keeps today's mix)."""
    c = engine.campaign
    return OperatorBandit(c.operators.bandit, engine.operator_mix("random"), engine.operator_mix("llm"),
                          llm_share=c.operators.llm_share, seed=c.random_seed)


def observations(engine: EngineView, attempts: list[Attempt]) -> list[Observation]:
    """The bandit observations of one generation's attempts (after its funnel), in order."""
    cfg = engine.bandit.config
    screen = engine.fidelities[0]
    out = []
    for a in attempts:
        llm_units = cfg.llm_call_units if a.llm else 0.0
        if a.child is None:
            cost = a.seconds if cfg.cost == "seconds" else llm_units
            out.append(Observation(a.operator, 0.0, max(cost, MIN_COST)))
            continue
        charged = engine.eval_charge.get(a.child.id, (0.0, 0.0))
        if screen not in a.child.results and not charged[1]:
            continue          # never evaluated (the budget ran out first): no evidence either way
        parents = [engine.individuals[p] for p in a.child.parents if p in engine.individuals]
        base = max((p.screen_score for p in parents), default=WORST_SCORE)
        child = a.child.screen_score
        delta = child - base if child > WORST_SCORE and base > WORST_SCORE and not a.duplicate else 0.0
        cost = a.seconds + charged[0] if cfg.cost == "seconds" else charged[1] + llm_units
        out.append(Observation(a.operator, max(0.0, delta), max(cost, MIN_COST), valid=not a.duplicate,
                               improved=delta > 0))
    return out
