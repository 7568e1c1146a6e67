"""Selection and survival policies (``[search] strategy = ...``).

- ``regularized``: aging evolution (Real et al. 2019; AutoML-Zero; the Lion search). Parents come
  from tournaments of ``search.tournament`` individuals; the new children join the population
  and the *oldest* individuals leave once it exceeds ``search.population``. Aging keeps
  turnover high, so a lucky score cannot sit in the population forever.
- ``elitist``: (mu + lambda): the best ``population`` of parents and children survive.
- ``nsga2``: (mu + lambda) survival by NSGA-II (DEAP's ``tools.selNSGA2``: non-dominated
  sorting + crowding distance) over ``search.objectives`` (score up; program size and
  state-tensor count down). The report draws the front with DEAP's ``tools.ParetoFront``.

Tournaments use DEAP's ``tools.selTournament`` on an adjusted fitness
``percentile_rank(fitness) + child_bonus / (1 + children)``: the rank makes the bonus
scale-free, and the bonus favours parents that have few children (ShinkaEvolve's novelty
weighting), which keeps lineages diverse. DEAP draws from the global ``random`` module, so
every call runs inside ``deap_random(ctx.rng)``, which lends DEAP the engine's checkpointed
generator and takes its advanced state back (runs stay reproducible and resumable).
"""
from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from deap import base, tools

from evaluators.base import WORST_SCORE

from .campaign import Campaign
from .plugins import Context, Strategy
from .registry import register_strategy
from .types import Individual, Job


@contextmanager
def deap_random(rng: random.Random) -> Iterator[None]:
    """Run DEAP (which uses the global ``random``) on ``rng``'s stream."""
    saved = random.getstate()
    random.setstate(rng.getstate())
    try:
        yield
    finally:
        rng.setstate(random.getstate())
        random.setstate(saved)


class _Sel:
    """A population member as DEAP's tournament sees it (``sel`` is the adjusted fitness)."""
    __slots__ = ("ind", "sel")

    def __init__(self, ind: Individual, sel: float):
        self.ind, self.sel = ind, sel


def adjusted_fitness(ctx: Context, pool: Sequence[Individual], bonus: float) -> list[float]:
    """Percentile rank of each fitness in ``pool`` (ties share the mean rank) + child bonus."""
    fits = [ctx.fitness(i) for i in pool]
    order = sorted(range(len(pool)), key=lambda k: fits[k])
    ranks = [0.0] * len(pool)
    k = 0
    while k < len(order):
        j = k
        while j + 1 < len(order) and fits[order[j + 1]] == fits[order[k]]:
            j += 1
        for t in range(k, j + 1):
            ranks[order[t]] = (k + j) / 2
        k = j + 1
    denom = max(1, len(pool) - 1)
    return [ranks[t] / denom + bonus / (1 + pool[t].children) for t in range(len(pool))]


def tournament(ctx: Context, pool: Sequence[Individual], k: int, size: int, bonus: float) -> list[Individual]:
    """k parents, each the winner of a DEAP tournament of ``size`` on the adjusted fitness."""
    if not pool:
        raise RuntimeError("empty population: no seed could be evaluated (check the seed rules and the "
                           "evaluator's errors in the run's events)")
    adj = adjusted_fitness(ctx, pool, bonus)
    items = [_Sel(i, a) for i, a in zip(pool, adj)]
    with deap_random(ctx.rng):
        won = tools.selTournament(items, k, tournsize=min(size, len(items)), fit_attr="sel")
    return [w.ind for w in won]


class _TournamentPlan(Strategy):
    """plan(): one operator per child from the campaign's mix, parents by tournament."""

    def plan(self, ctx: Context, n: int) -> list[Job]:
        jobs = []
        for _ in range(n):
            name = ctx.choose_operator()
            arity = ctx.operator(name).arity
            parents = self.select(ctx, arity)
            jobs.append(Job(name, parents))
        return jobs

    def select(self, ctx: Context, k: int) -> list[Individual]:
        s = self.campaign.search
        return tournament(ctx, self.pool(ctx), k, s.tournament, s.child_bonus)

    def pool(self, ctx: Context) -> list[Individual]:
        return ctx.population


@register_strategy("regularized")
class RegularizedEvolution(_TournamentPlan):
    """Aging evolution: children join, the oldest leave beyond ``search.population``."""
    name = "regularized"

    def survive(self, ctx: Context, population: list[Individual], children: list[Individual]) -> list[Individual]:
        pop = list(population) + list(children)
        excess = len(pop) - self.campaign.search.population
        if excess > 0:
            oldest = set(sorted(i.id for i in pop)[:excess])
            pop = [i for i in pop if i.id not in oldest]
        return pop


@register_strategy("elitist")
class Elitist(_TournamentPlan):
    """(mu + lambda): the best ``search.population`` of parents and children survive."""
    name = "elitist"

    def survive(self, ctx: Context, population: list[Individual], children: list[Individual]) -> list[Individual]:
        pool = {i.id: i for i in list(population) + list(children)}.values()
        best = sorted(pool, key=lambda i: (ctx.fitness(i), i.id), reverse=True)
        return best[: self.campaign.search.population]


_WEIGHTS = {"score": 1.0, "size": -1.0, "state": -1.0}
_META = {"size": "size", "state": "n_state"}


class _MO:
    """A DEAP-shaped wrapper: ``fitness`` with weighted multi-objective values."""
    __slots__ = ("ind", "fitness")

    def __init__(self, ind: Individual, fitness: base.Fitness):
        self.ind, self.fitness = ind, fitness


@register_strategy("nsga2")
class NSGA2(_TournamentPlan):
    """(mu + lambda) survival by NSGA-II over score, program size and state tensors.

    Parents: tournaments on ``percentile_rank(-front, crowding) + child_bonus`` of the
    population. Failed candidates (no ok score) only survive when there are too few others.
    """
    name = "nsga2"

    def __init__(self, campaign: Campaign):
        super().__init__(campaign)
        names = campaign.search.objectives
        self.names = list(names)
        self.fitness_cls = type("MOFitness", (base.Fitness,), {"weights": tuple(_WEIGHTS[n] for n in names)})

    def wrap(self, ctx: Context, pool: Sequence[Individual]) -> list[_MO]:
        out = []
        for i in pool:
            vals = []
            for n in self.names:
                vals.append(ctx.fitness(i) if n == "score" else float(i.meta.get(_META[n], 0)))
            f = self.fitness_cls()
            f.values = tuple(vals)
            out.append(_MO(i, f))
        return out

    def survive(self, ctx: Context, population: list[Individual], children: list[Individual]) -> list[Individual]:
        mu = self.campaign.search.population
        pool = list({i.id: i for i in list(population) + list(children)}.values())
        good = [i for i in pool if ctx.fitness(i) > WORST_SCORE]
        bad = sorted((i for i in pool if ctx.fitness(i) <= WORST_SCORE), key=lambda i: -i.id)
        if len(good) <= mu:
            return good + bad[: mu - len(good)]
        chosen = tools.selNSGA2(self.wrap(ctx, good), mu)
        return sorted((w.ind for w in chosen), key=lambda i: i.id)

    def select(self, ctx: Context, k: int) -> list[Individual]:
        pool = self.pool(ctx)
        if len(pool) < 2:
            return tournament(ctx, pool, k, 1, 0.0)
        wrapped = self.wrap(ctx, pool)
        fronts = tools.sortNondominated(wrapped, len(wrapped))
        key: dict[int, tuple[int, float]] = {}
        for r, front in enumerate(fronts):
            tools.emo.assignCrowdingDist(front)
            for w in front:
                key[w.ind.id] = (-r, w.fitness.crowding_dist)
        ordered = sorted(pool, key=lambda i: key[i.id])
        pct = {i.id: t / max(1, len(ordered) - 1) for t, i in enumerate(ordered)}
        s = self.campaign.search
        items = [_Sel(i, pct[i.id] + s.child_bonus / (1 + i.children)) for i in pool]
        with deap_random(ctx.rng):
            won = tools.selTournament(items, k, tournsize=min(s.tournament, len(items)), fit_attr="sel")
        return [w.ind for w in won]


def pareto_front(items: Sequence[tuple[float, ...]], weights: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points (DEAP's ``tools.ParetoFront``; equal points all kept)."""
    cls = type("PF", (base.Fitness,), {"weights": tuple(weights)})
    front = tools.ParetoFront(similar=lambda a, b: a.ind == b.ind)
    wrapped = []
    for k, vals in enumerate(items):
        f = cls()
        f.values = tuple(vals)
        wrapped.append(_MO(k, f))  # type: ignore[arg-type]
    front.update(wrapped)
    return sorted(w.ind for w in front)  # type: ignore[misc]
