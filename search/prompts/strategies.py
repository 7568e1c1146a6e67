"""The prompt kind's strategies: EvoPrompt GA and DE, OPRO, the rewrite baseline and demonstration search."""
from __future__ import annotations

from search.core import Campaign, Context, Individual, Job, Strategy, register_strategy

from . import text as ops
from .options import prompt_options


def _weights(pop: list[Individual]) -> list[float]:
    """Roulette weights: the score at the member's level, floored at 0 (failures weigh least)."""
    return [max(0.0, i.score) for i in pop]


class _PromptStrategy(Strategy):
    llm_op = "prompt_rewrite"

    def __init__(self, campaign: Campaign):
        super().__init__(campaign)
        self.size = campaign.search.population
        self.o = prompt_options(campaign)

    def op(self, ctx: Context, name: str) -> str:
        return ctx.choose_for(name) if ctx.llm_available() else "prompt_edit"

    def fill(self, ctx: Context, n: int) -> list[Job]:
        """Paraphrase jobs while the population is short (EvoPrompt's initial population)."""
        pop = ctx.top(len(ctx.population), ctx.population)
        missing = self.size - len(pop)
        if not self.o.fill or missing <= 0 or not pop:
            return []
        return [Job(self.op(ctx, "prompt_paraphrase"), [pop[k % len(pop)]]) for k in range(min(n, missing))]

    def survive(self, ctx: Context, population: list[Individual], children: list[Individual]) -> list[Individual]:
        """The best ``population`` of parents and children by (fidelity level, score)."""
        ids = {m.id for m in population}
        return ctx.top(self.size, list(population) + [c for c in children if c.id not in ids])

    def restart(self, ctx: Context, best: Individual) -> list[Individual]:
        return ctx.top(self.size, ctx.population)

    def fill_or_population(self, ctx: Context, n: int) -> tuple[list[Job], list[Individual]]:
        """The paraphrase jobs while the population is short (``fill``), else none and the population."""
        jobs = self.fill(ctx, n)
        return (jobs, []) if jobs else ([], list(ctx.population))

    def tournament(self, ctx: Context, pop: list[Individual], keys: list, exclude: int | None = None) -> Individual:
        """The best (by ``keys``) of ``search.tournament`` members of ``pop`` drawn with ``ctx.rng``,
        leaving out index ``exclude``."""
        idx = [k for k in range(len(pop)) if k != exclude] or [0]
        idx = ctx.rng.sample(idx, min(self.campaign.search.tournament, len(idx)))
        return pop[max(idx, key=lambda k: keys[k])]


@register_strategy("evoprompt_ga")
class EvoPromptGA(_PromptStrategy):
    """Roulette selection of two parents per child; best N of parents + children survive."""
    name = "evoprompt_ga"

    def plan(self, ctx: Context, n: int) -> list[Job]:
        jobs, pop = self.fill_or_population(ctx, n)
        if jobs:
            return jobs
        if len(pop) < 2:
            return [Job(self.op(ctx, "prompt_paraphrase" if self.o.fill else "prompt_edit"), pop[:1])
                    for _ in range(n)] if pop else []
        w = _weights(pop)
        out = []
        for _ in range(n):
            i, j = ops.roulette(w, ctx.rng, 2)
            a, b = sorted((pop[i], pop[j]), key=lambda m: m.rank_key(), reverse=True)
            out.append(Job(self.op(ctx, "prompt_ga"), [a, b]))
        return out


@register_strategy("evoprompt_de")
class EvoPromptDE(_PromptStrategy):
    """Each member in turn gets a DE child (parents [current, best, a, b]); the child replaces it
    when it ranks at least as high (fidelity level first, then score)."""
    name = "evoprompt_de"

    def plan(self, ctx: Context, n: int) -> list[Job]:
        jobs = self.fill(ctx, n)
        if jobs:
            return jobs
        pop = list(ctx.population)
        if not pop:
            return []
        best = ctx.top(1, pop)[0]
        out = []
        for _ in range(n):
            c = int(self.state.get("cursor", 0)) % len(pop)
            self.state["cursor"] = c + 1
            cur = pop[c]
            others = [m for m in pop if m.id != cur.id] or [cur]
            a, b = (ctx.rng.sample(others, 2) if len(others) >= 2 else (others[0], others[0]))
            out.append(Job(self.op(ctx, "prompt_de"), [cur, best, a, b]))
        return out

    def survive(self, ctx: Context, population: list[Individual], children: list[Individual]) -> list[Individual]:
        pop = list(population)
        for ch in children:
            if any(m.id == ch.id for m in pop):
                continue
            if len(pop) < self.size:
                pop.append(ch)
                continue
            slot = next((k for k, m in enumerate(pop) if ch.parents and m.id == ch.parents[0]), None)
            if slot is not None and ch.rank_key() >= pop[slot].rank_key():
                pop[slot] = ch
        return pop


@register_strategy("opro")
class OPRO(_PromptStrategy):
    """Each child sees the top ``opro_top`` prompts evaluated so far (the trajectory, with scores)."""
    name = "opro"

    def plan(self, ctx: Context, n: int) -> list[Job]:
        traj = ctx.top(self.o.opro_top)
        if not traj:
            return []
        return [Job(self.op(ctx, "prompt_opro"), list(traj)) for _ in range(n)]


@register_strategy("prompt_rewrite")
class Rewrite(_PromptStrategy):
    """Tournament parent -> "rewrite it to score higher"; best N survive (the baseline)."""
    name = "prompt_rewrite"

    def plan(self, ctx: Context, n: int) -> list[Job]:
        jobs, pop = self.fill_or_population(ctx, n)
        if jobs or not pop:
            return jobs
        w = [m.rank_key() for m in pop]
        out = []
        for _ in range(n):
            parent = self.tournament(ctx, pop, w)      # drawn before the operator (as the RNG order was)
            out.append(Job(self.op(ctx, "prompt_rewrite"), [parent]))
        return out


@register_strategy("demo_search")
class DemoSearch(_PromptStrategy):
    """Demonstration search, no LLM (``[prompt] algorithm = "demos"``): tournament parents; a child
    crosses two parents' demonstration sets over (probability 1/2 once there are two members) or
    adds / drops / replaces / reorders one demonstration; the best N of parents and children
    survive. The instruction stays the first parent's."""
    name = "demo_search"

    def plan(self, ctx: Context, n: int) -> list[Job]:
        pop = list(ctx.population)
        if not pop:
            return []
        w = [m.rank_key() for m in pop]
        out = []
        for _ in range(n):
            if len(pop) >= 2 and ctx.rng.random() < 0.5:
                a = self.tournament(ctx, pop, w)
                out.append(Job("prompt_demo_cross", [a, self.tournament(ctx, pop, w, exclude=pop.index(a))]))
            else:
                out.append(Job("prompt_demo_edit", [self.tournament(ctx, pop, w)]))
        return out
