"""The engine's operator choice: which operator makes the next child.

A part of :class:`search.core.Engine` (a mixin, split out of the loop for size): it reads the
campaign's ``[operators]`` mix, the operator bandit (``self.bandit``, search.core.bandit) and
the LLM gate (:class:`search.core.engine_llm.LLMGate`), and draws with the engine's seeded
``rng`` only, so choices are checkpointed and replayed exactly.
"""
from __future__ import annotations

import random


class OperatorChoice:
    """Operator choice of the engine (uses ``campaign``, ``kind``, ``rng``, ``bandit``,
    ``get_operator``, ``llm_available``, ``llm_disabled_reason``, ``llm_calls`` of Engine)."""

    def operator_mix(self, group: str) -> dict[str, float]:
        """The campaign's ``random`` or ``llm`` operator weights (> 0), or the kind's defaults."""
        ops = getattr(self.campaign.operators, group) or (
            self.kind.default_random_ops if group == "random" else self.kind.default_llm_ops)
        return {k: w for k, w in ops.items() if w > 0}

    def choose_operator(self, arity: int | None = None) -> str:
        """Draw an operator: from the bandit's shares (``[operators.bandit]``), or (``fixed``) the
        LLM group with probability llm_share (when usable), else random."""
        if self.bandit.adaptive:
            name = self.bandit.draw(None if arity is None else (lambda n: self.get_operator(n).arity == arity),
                                    llm_ok=self.llm_available())
            if name is not None:
                return name
        use_llm = self.campaign.operators.llm_share > 0 and self.rng.random() < self.campaign.operators.llm_share
        groups = ["llm", "random"] if use_llm and self.llm_available() else ["random"]
        for g in groups:
            mix = self.operator_mix(g)
            if arity is not None:
                mix = {k: w for k, w in mix.items() if self.get_operator(k).arity == arity}
            if mix:
                names = sorted(mix)
                return self.rng.choices(names, weights=[mix[n] for n in names])[0]
        raise RuntimeError(f"no operator available (arity={arity}); check [operators] in the campaign")

    def choose_for(self, name: str) -> str:
        """The operator of a slot a strategy planned for ``name`` (prompt algorithms name theirs):
        ``name`` in ``fixed`` mode, else the bandit's draw among ``name`` and the random operators."""
        if not self.bandit.adaptive:
            return name
        return self.bandit.draw(among=[name, *self.operator_mix("random")], llm_ok=self.llm_available()) or name

    def bandit_llm_ok(self) -> bool:
        """Whether this generation's shares include the LLM operators (``fixed``: without loading
        the backend or logging, the shares are only recorded)."""
        if self.bandit.adaptive:
            return self.llm_available()
        cap = self.campaign.budget.llm_calls
        return (self.campaign.operators.llm_share > 0 and not self.llm_disabled_reason
                and (cap is None or self.llm_calls < cap))

    def fallback_operator(self, arity: int = 1, rng: random.Random | None = None) -> str:
        """A random (non-LLM) operator, for LLM slots that produced nothing usable."""
        mix = {k: w for k, w in self.operator_mix("random").items() if self.get_operator(k).arity <= arity}
        names = sorted(mix)
        return (rng or self.rng).choices(names, weights=[mix[n] for n in names])[0]
