"""The prompt strategies the engine runs (EvoPrompt GA and DE, OPRO, rewrite), on hand-made populations
through the engine's own Context: parent selection, operator choice, fill, and survival."""
import random
from collections import Counter
from types import SimpleNamespace

import pytest

from evaluators.base import EvalResult
from proxies.prompts import get_prompt_task
from search.core import OPERATORS, Context, Individual, parse_campaign
from search.prompts import OPRO, EvoPromptDE, EvoPromptGA, OPROOperator, Rewrite

FIDS = ("minibatch", "dev")


def ind(i, score, level=1, parents=(), text=None):
    x = Individual(id=i, text=text or f"prompt {i}", kind="prompt", key=str(i), parents=tuple(parents))
    for lv in range(level + 1):
        x.results[FIDS[lv]] = EvalResult(key=str(i), fidelity=FIDS[lv], score=score)
    x.level, x.score, x.screen_score = level, score, score
    return x


def ctx(pop, history=(), seed=0, llm=True, evaluator=None):
    hist = {i.id: i for i in list(pop) + list(history)}
    eng = SimpleNamespace(rng=random.Random(seed), population=list(pop), individuals=hist,
                          llm_available=lambda: llm, evaluator=evaluator,
                          choose_for=lambda name: name)   # the engine's fixed operator mix
    return Context(eng)


def camp(alg, size=3, **prompt):
    return parse_campaign({"name": "s", "kind": "prompt", "prompt": {"task": "sum", "algorithm": alg, **prompt},
                           "search": {"population": size, "batch_size": 2}})


# -- GA -------------------------------------------------------------------------------

def test_ga_roulette_prefers_fitter_parents_better_first():
    pop = [ind(0, 0.1), ind(1, 0.5), ind(2, 0.9)]
    jobs = EvoPromptGA(camp("ga")).plan(ctx(pop), 3000)
    assert {j.operator for j in jobs} == {"prompt_ga"}
    counts = Counter()
    for j in jobs:
        a, b = j.parents
        assert a.id != b.id and a.rank_key() >= b.rank_key()      # distinct, better first
        counts.update([a.id, b.id])
    assert counts[2] > counts[1] > counts[0]


def test_ga_fills_with_paraphrases_then_falls_back_without_llm():
    s = EvoPromptGA(camp("ga", size=3))
    jobs = s.plan(ctx([ind(0, 0.3)]), 5)
    assert [j.operator for j in jobs] == ["prompt_paraphrase", "prompt_paraphrase"]   # 2 missing members
    assert {j.operator for j in s.plan(ctx([ind(0, 0.3)], llm=False), 2)} == {"prompt_edit"}
    no_fill = EvoPromptGA(camp("ga", size=3, fill=False))
    assert {j.operator for j in no_fill.plan(ctx([ind(0, 0.3)]), 2)} == {"prompt_edit"}
    full = [ind(0, 0.1), ind(1, 0.5), ind(2, 0.9)]
    assert {j.operator for j in s.plan(ctx(full, llm=False), 4)} == {"prompt_edit"}


def test_ga_keeps_the_best_n_of_parents_and_children():
    pop = [ind(0, 0.2), ind(1, 0.5), ind(2, 0.6)]
    kids = [ind(3, 0.7), ind(4, 0.1), ind(5, 0.99, level=0)]          # #5 screened only, not promoted
    out = EvoPromptGA(camp("ga")).survive(ctx(pop + kids), pop, kids)
    assert [i.id for i in out] == [3, 2, 1]                          # dev scores outrank a minibatch-only one


# -- DE -------------------------------------------------------------------------------

def test_de_visits_each_member_in_turn_with_best_and_two_others():
    pop = [ind(0, 0.2), ind(1, 0.8), ind(2, 0.5), ind(3, 0.4)]
    s = EvoPromptDE(camp("de", size=4))
    c = ctx(pop)
    jobs = s.plan(c, 3) + s.plan(c, 3)                               # the cursor persists between generations
    assert [j.parents[0].id for j in jobs] == [0, 1, 2, 3, 0, 1]
    for j in jobs:
        cur, best, a, b = j.parents
        assert j.operator == "prompt_de" and best.id == 1
        assert a.id != b.id and cur.id not in (a.id, b.id)
    assert s.state["cursor"] % len(pop) == 2


def test_de_child_replaces_its_member_only_when_at_least_as_good():
    pop = [ind(0, 0.2), ind(1, 0.8), ind(2, 0.5)]
    kids = [ind(3, 0.3, parents=(0, 1, 2, 1)),                       # beats #0: replaces it
            ind(4, 0.7, parents=(1, 1, 0, 2)),                       # worse than #1: dropped
            ind(5, 0.5, parents=(2, 1, 0, 1)),                       # ties #2: replaces it (at least as good)
            ind(6, 0.99, level=0, parents=(0, 1, 2, 1))]             # minibatch only: never replaces
    out = EvoPromptDE(camp("de")).survive(ctx(pop + kids), pop, kids)
    assert [i.id for i in out] == [3, 1, 5]


def test_de_short_population_appends_children():
    pop = [ind(0, 0.2)]
    out = EvoPromptDE(camp("de")).survive(ctx(pop), pop, [ind(1, 0.1, parents=(0,)), ind(2, 0.0, parents=(0,))])
    assert [i.id for i in out] == [0, 1, 2]


# -- OPRO -----------------------------------------------------------------------------

def test_opro_shows_the_top_of_the_whole_trajectory_ascending():
    gone = [ind(7, 0.95), ind(8, 0.05, level=0)]                     # evaluated earlier, no longer in the population
    pop = [ind(0, 0.2), ind(1, 0.6), ind(2, 0.4)]
    c = camp("opro", opro_top=3, opro_examples=2)
    jobs = OPRO(c).plan(ctx(pop, gone), 2)
    assert len(jobs) == 2 and {j.operator for j in jobs} == {"prompt_opro"}
    assert [i.id for i in jobs[0].parents] == [7, 1, 2]              # top 3 of everything scored
    task = get_prompt_task("sum")
    op = OPROOperator(c)
    req = op.request(ctx(pop, gone, evaluator=SimpleNamespace(task=task)), jobs[0].parents)
    u = req.messages[-1].content
    assert task.description in u and u.count("Input: ") == 2
    assert u.index("prompt 2") < u.index("prompt 1") < u.index("prompt 7")   # ascending: best last
    assert "Score: 95" in u and "prompt 0" not in u
    assert OPERATORS["prompt_opro"] is OPROOperator


# -- rewrite --------------------------------------------------------------------------

def test_rewrite_tournament_parent():
    pop = [ind(0, 0.1), ind(1, 0.9), ind(2, 0.5)]
    c = camp("rewrite")
    c.search.tournament = 3
    jobs = Rewrite(c).plan(ctx(pop), 4)
    assert all(j.operator == "prompt_rewrite" and j.parents[0].id == 1 for j in jobs)


@pytest.mark.parametrize("alg,strategy", [("ga", "evoprompt_ga"), ("de", "evoprompt_de"), ("opro", "opro"),
                                          ("rewrite", "prompt_rewrite")])
def test_algorithm_picks_the_strategy(alg, strategy):
    assert camp(alg).search.strategy == strategy
