"""The operator bandit's arithmetic: UCB indices, Gamma posteriors, shares inside floors and
ceilings, updates with decay, and a checkpoint round trip that continues the same draws."""
from __future__ import annotations

import math
import random

import pytest
from pydantic import ValidationError

from search.core.bandit import (
    Arm,
    BanditConfig,
    BanditError,
    Observation,
    OperatorBandit,
    children_shares,
    fill_by_priority,
    gamma_posteriors,
    operator_table,
    share_points,
    thompson_shares,
    ucb_indices,
)

RANDOM = {"insert": 1.0, "delete": 1.0, "constant": 2.0}
LLM = {"llm_mutate": 1.0, "llm_crossover": 1.0}


def bandit(algorithm: str, **cfg) -> OperatorBandit:
    cfg.setdefault("share_of", "children")     # floors and ceilings on the children (time: see below)
    return OperatorBandit(BanditConfig(algorithm=algorithm, **cfg), dict(RANDOM), dict(LLM), llm_share=0.2, seed=3)


def test_fill_by_priority_gives_the_rest_in_order_within_ceilings():
    floors = dict.fromkeys("abc", 0.1)
    ceils = {"a": 0.5, "b": 1.0, "c": 1.0}
    q = fill_by_priority([["a"], ["b"], ["c"]], floors, ceils)
    assert q == pytest.approx({"a": 0.5, "b": 0.4, "c": 0.1})
    q = fill_by_priority([["a", "b"], ["c"]], floors, ceils)          # a tie shares equally
    assert q == pytest.approx({"a": 0.45, "b": 0.45, "c": 0.1})
    q = fill_by_priority([["a", "b"], ["c"]], floors, {"a": 0.2, "b": 0.3, "c": 0.3})
    assert sum(q.values()) == pytest.approx(1.0)                       # ceilings sum < 1: relaxed, in proportion
    assert q == pytest.approx({"a": 0.25, "b": 0.375, "c": 0.375})


def test_ucb_index_by_hand():
    arms = {"a": Arm(n=2, reward=1.0, cost=2.0), "b": Arm(n=2, reward=0.0, cost=1.0), "new": Arm()}
    idx = ucb_indices(arms, c=1.0)
    pooled = 1.0 / 3.0
    bonus = math.sqrt(2 * math.log(4) / 2)
    assert idx["a"] == pytest.approx(0.5 / pooled + bonus)
    assert idx["b"] == pytest.approx(bonus)
    assert idx["new"] == math.inf
    assert ucb_indices(arms, c=0.0)["a"] == pytest.approx(1.5)


def test_gamma_posteriors_by_hand():
    arms = {"a": Arm(n=5, reward=0.2, cost=10.0, improved_w=2), "b": Arm(n=5, reward=0.0, cost=10.0)}
    post = gamma_posteriors(arms)
    # u = 0.2 / 2 improvements = 0.1; prior cost b0 = 20 s / 2 improvements = 10 s
    assert post["a"] == pytest.approx((1 + 0.2 / 0.1, 10 + 10))
    assert post["b"] == pytest.approx((1.0, 20.0))
    assert gamma_posteriors({"x": Arm(), "y": Arm()}) == {"x": (1.0, 1.0), "y": (1.0, 1.0)}


def test_thompson_shares_follow_the_evidence():
    arms = {"good": Arm(n=20, reward=2.0, cost=20.0, improved_w=10), "bad": Arm(n=20, reward=0.0, cost=20.0),
            "ok": Arm(n=20, reward=0.5, cost=20.0, improved_w=5)}
    floors, ceils = dict.fromkeys(arms, 0.05), {"good": 0.6, "bad": 1.0, "ok": 1.0}
    q = thompson_shares(arms, random.Random(0), 400, floors, ceils)
    assert sum(q.values()) == pytest.approx(1.0)
    assert q["good"] == pytest.approx(0.6, abs=0.01)                     # best: capped at its ceiling
    assert q["ok"] > 0.3 and q["bad"] < 0.1                              # the rest goes to the next best
    assert q == thompson_shares(arms, random.Random(0), 400, floors, ceils)   # seeded
    free = thompson_shares(arms, random.Random(1), 400, dict.fromkeys(arms, 0.0), dict.fromkeys(arms, 1.0))
    assert free["good"] > 0.9


@pytest.mark.parametrize("algorithm", ["ucb", "thompson"])
def test_shares_respect_floors_and_ceilings(algorithm):
    b = bandit(algorithm, floor=0.05, ceilings={"llm_mutate": 0.4}, floors={"llm_crossover": 0.1})
    for gen in range(30):   # llm_mutate is by far the best arm
        sh = b.begin_generation(gen, llm_ok=True)
        assert sum(sh.values()) == pytest.approx(1.0)
        assert all(sh[a] >= 0.05 - 1e-9 for a in sh) and sh["llm_crossover"] >= 0.1 - 1e-9
        assert sh["llm_mutate"] <= 0.4 + 1e-9
        b.observe([Observation("llm_mutate", 0.5, 1.0, True, True), Observation("insert", 0.0, 1.0, True),
                   Observation("delete", 0.01, 1.0, True, True), Observation("constant", 0.0, 1.0),
                   Observation("llm_crossover", 0.0, 5.0)])
    assert sh["llm_mutate"] == pytest.approx(0.4)                        # at its ceiling
    assert sh["llm_crossover"] == pytest.approx(0.1, abs=0.02)           # at (or near) its floor
    assert sh["delete"] > max(sh["insert"], sh["constant"])              # the next best takes the rest
    no_llm = b.shares(llm_ok=False)                                      # the LLM dropped out
    assert set(no_llm) == set(RANDOM) and sum(no_llm.values()) == pytest.approx(1.0)


def test_garbage_arm_falls_to_its_floor_and_a_good_one_rises_ucb():
    b = bandit("ucb", floor=0.02, exploration=0.5)
    for gen in range(60):
        b.begin_generation(gen, True)
        b.observe([Observation("llm_mutate", 0.0, 8.0), Observation("llm_crossover", 0.0, 8.0),
                   Observation("insert", 0.02, 1.0, True, True), Observation("delete", 0.0, 1.0, True),
                   Observation("constant", 0.01, 1.0, True, True)])
    sh = b.begin_generation(60, True)
    assert sh["llm_mutate"] == pytest.approx(0.02) and sh["llm_crossover"] == pytest.approx(0.02)
    assert max(sh, key=sh.get) == "insert"


def test_fixed_mode_shares_are_the_campaign_mix():
    b = bandit("fixed")
    sh = b.begin_generation(1, llm_ok=True)
    assert sh == pytest.approx({"insert": 0.2, "delete": 0.2, "constant": 0.4, "llm_mutate": 0.1,
                                "llm_crossover": 0.1})
    assert b.shares(llm_ok=False) == pytest.approx({"insert": 0.25, "delete": 0.25, "constant": 0.5})


def test_observe_counts_and_decay():
    b = bandit("ucb", decay=0.5)
    b.observe([Observation("insert", 0.2, 2.0, True, True), Observation("insert", -1.0, 0.0)])
    a = b.arms["insert"]
    assert (a.n, a.reward, a.cost, a.children, a.valid, a.improved) == (2, 0.2, 2.001, 2, 1, 1)
    b.observe([])
    assert (a.n, a.reward, a.children) == (1.0, 0.1, 2)                  # discounted; totals kept
    assert a.reward_total == pytest.approx(0.2)


@pytest.mark.parametrize("algorithm", ["ucb", "thompson"])
def test_checkpoint_round_trip_continues_exactly(algorithm):
    def feed(b, gen):
        b.begin_generation(gen, True)
        picks = [b.draw() for _ in range(4)]
        b.observe([Observation(p, 0.1 if p == "constant" else 0.0, 1.0, True, p == "constant") for p in picks])
        return picks

    a = bandit(algorithm)
    for g in range(5):
        feed(a, g)
    saved = a.state_dict()
    ref = [feed(a, g) for g in range(5, 12)]
    b = bandit(algorithm)
    import json
    b.load_state_dict(json.loads(json.dumps(saved)))                     # through JSON, as checkpoints are
    assert [feed(b, g) for g in range(5, 12)] == ref
    assert b.state_dict() == a.state_dict()


def test_draw_respects_arity_and_among():
    b = bandit("ucb")
    b.begin_generation(0, True)
    assert all(b.draw(arity_ok=lambda n: n == "llm_crossover") == "llm_crossover" for _ in range(5))
    assert b.draw(arity_ok=lambda n: False) is None
    assert {b.draw(among=["prompt_ga", "prompt_edit"]) for _ in range(40)} == {"prompt_ga", "prompt_edit"}


def test_config_errors_say_what_to_change():
    with pytest.raises(BanditError, match="floors .* sum to"):
        OperatorBandit(BanditConfig(algorithm="ucb", floor=0.3), dict(RANDOM), dict(LLM))
    with pytest.raises(BanditError, match="ceilings"):
        OperatorBandit(BanditConfig(algorithm="ucb", ceiling=0.2), dict(RANDOM), {})
    with pytest.raises(ValidationError, match="above its ceiling"):
        BanditConfig(floors={"insert": 0.5}, ceilings={"insert": 0.2})
    with pytest.raises(ValidationError):
        BanditConfig(algorithm="egreedy")
    OperatorBandit(BanditConfig(floor=0.9), dict(RANDOM), dict(LLM))     # fixed mode: floors unused


def test_operator_table_and_share_points():
    b = bandit("ucb")
    for g in range(3):
        b.begin_generation(g, True)
        b.observe([Observation("insert", 0.3, 3.0, True, True), Observation("llm_mutate", 0.0, 2.0)])
    rows = {r["operator"]: r for r in operator_table(b.state_dict())}
    assert rows["insert"]["children"] == 3 and rows["insert"]["improved"] == 3
    assert rows["insert"]["mean_reward"] == pytest.approx(0.1)
    assert rows["llm_mutate"]["valid"] == 0 and len(rows["llm_mutate"]["series"]) == 3
    assert share_points([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], 3) == [0.1, 0.5, 0.9]


def test_children_shares_divide_time_by_cost():
    arms = {"slow": Arm(n=2, cost=20.0), "fast": Arm(n=4, cost=4.0), "new": Arm()}
    q = children_shares({"slow": 0.5, "fast": 0.25, "new": 0.25}, arms)
    # per proposal: slow 10 s, fast 1 s, new the pooled mean 24 / 6 = 4 s
    raw = {"slow": 0.05, "fast": 0.25, "new": 0.0625}
    assert q == pytest.approx({k: v / sum(raw.values()) for k, v in raw.items()})


@pytest.mark.parametrize("algorithm", ["ucb", "thompson"])
def test_time_floors_bound_the_time_of_a_slow_useless_operator(algorithm):
    b = bandit(algorithm, floor=0.05, share_of="time")
    for gen in range(20):
        sh = b.begin_generation(gen, True)
        b.observe([Observation("llm_mutate", 0.0, 20.0), Observation("llm_crossover", 0.0, 20.0),
                   Observation("insert", 0.02, 1.0, True, True), Observation("delete", 0.0, 1.0, True),
                   Observation("constant", 0.01, 1.0, True, True)])
    sh = b.begin_generation(20, True)
    cost = {k: a.cost / a.n for k, a in b.arms.items()}
    time = {k: sh[k] * cost[k] for k in sh}
    time = {k: v / sum(time.values()) for k, v in time.items()}
    assert time["llm_mutate"] == pytest.approx(0.05, abs=0.01)
    assert time["llm_crossover"] == pytest.approx(0.05, abs=0.01)
    assert sh["llm_mutate"] < 0.01                                       # a twentieth of the children
    assert sum(sh.values()) == pytest.approx(1.0)
