"""Racing at the funnel's top fidelity (search.core.race): the paired test, the race itself on exact
synthetic results, and a campaign with ``[funnel] mode = "race"`` on a small kind of this file's own
whose evaluators take any seed block (the true quality of a candidate is known, the noise per seed
deterministic)."""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from evaluators import Candidate, EvalResult, Evaluator, Status, TaskResult
from search.core import (
    Campaign,
    Engine,
    KindPlugin,
    Operator,
    Proposal,
    RunView,
    register_kind,
    register_operator,
)
from search.core.race import RaceConfig, paired_diffs, race, race_score, significantly_worse

SEEDS = [0, 1]


def quality(text: str) -> float:
    """True mean log ratio of a candidate: its number of 'z' letters, a little."""
    return 0.05 * text.count("z") - 0.02 * text.count("a")


def noise(text: str, seed: int) -> float:
    return random.Random(f"{text}:{seed}").gauss(0.0, 0.05)


def result(text: str, seeds: list[int], fidelity: str = "only") -> EvalResult:
    tasks = {}
    for t in ("t1", "t2", "t3"):
        ratios = [quality(text) + noise(f"{text}:{t}", s) for s in seeds]
        tasks[t] = TaskResult(task=t, metric=float(np.mean([math.exp(-r) for r in ratios])), baseline=1.0,
                              score=float(np.mean(ratios)),
                              extra={"seed_metrics": [math.exp(-r) for r in ratios],
                                     "baseline_seed_metrics": [1.0] * len(ratios)})
    return EvalResult(key=text, fidelity=fidelity, status=Status.ok, tasks=tasks,
                      score=float(np.mean([t.score for t in tasks.values()])))


# -- the test and the race ----------------------------------------------------------------

def test_significantly_worse_is_one_sided_and_needs_evidence():
    assert significantly_worse(np.array([-0.2, -0.25, -0.18, -0.22, -0.21, -0.19]), 0.05)
    assert not significantly_worse(np.array([0.2, 0.25, 0.18, 0.22]), 0.05)      # better is never "worse"
    assert not significantly_worse(np.array([-0.3, 0.25, -0.1, 0.05]), 0.05)     # noise
    assert not significantly_worse(np.array([-0.5]), 0.05)                        # one pair proves nothing
    assert significantly_worse(np.array([-0.1, -0.1, -0.1]), 0.05)                # uniformly worse


def test_race_drops_the_clearly_worse_early_and_gives_contenders_more_seeds():
    blocks: dict[str, list[EvalResult]] = {t: [result(t, SEEDS)] for t in ("zzzz", "zzzzq", "aaaa", "zzzzy")}

    def evaluate(xs: list[str], b: int) -> None:
        for x in xs:
            assert len(blocks[x]) == b          # each block asked for once, in order
            blocks[x].append(result(x, [1000 + 2 * (b - 1), 1001 + 2 * (b - 1)]))

    out = race(["zzzzq", "aaaa", "zzzzy"], "zzzz", lambda x: blocks[x], evaluate, RaceConfig(blocks=4, alpha=0.05),
               clip=None, ident=lambda x: sum(map(ord, x)))
    # -0.08 vs +0.2 on 6 pairs: out after block 0; the two as good as the incumbent get every block
    assert out.dropped == {sum(map(ord, "aaaa")): 1}
    assert len(blocks["aaaa"]) == 1 and [len(blocks[x]) for x in ("zzzz", "zzzzq", "zzzzy")] == [4, 4, 4]
    assert out.requested == 9 and out.incumbent in ("zzzz", "zzzzq", "zzzzy")
    d = paired_diffs(blocks["zzzzq"], blocks["zzzz"], None)
    assert d.shape == (4 * 3 * 2,)                         # blocks x tasks x seeds, all paired
    assert race_score(blocks["zzzz"]) == pytest.approx(np.mean([r.score for r in blocks["zzzz"]]))


# -- a campaign that races ------------------------------------------------------------------

class BlockEvaluator(Evaluator):
    kind = "blocky"
    fidelities = ("coarse", "fine")

    def __init__(self, seeds: list[int]):
        self.seeds = seeds
        self.trained: list[tuple[str, str, tuple[int, ...]]] = []

    def key(self, candidate: Candidate) -> str:
        return candidate.text

    #: evaluations left before a simulated kill (the process dies mid-batch); None: never
    kill_after: int | None = None

    def evaluate(self, candidates, fidelity, on_result=None):
        out = []
        for i, c in enumerate(candidates):
            if BlockEvaluator.kill_after is not None:
                if BlockEvaluator.kill_after == 0:
                    BlockEvaluator.kill_after = None
                    raise KeyboardInterrupt("killed")
                BlockEvaluator.kill_after -= 1
            self.trained.append((c.text, fidelity, tuple(self.seeds)))
            r = result(c.text, self.seeds, fidelity)
            if on_result is not None:
                on_result(i, r)
            out.append(r)
        return out


class BlockyKind(KindPlugin):
    name = "blocky"
    default_random_ops = {"blocky_letter": 1.0}

    def make_evaluator(self, campaign, run_dir: Path) -> BlockEvaluator:
        return BlockEvaluator(SEEDS)

    def block_evaluator(self, evaluator, block: int) -> BlockEvaluator:
        return BlockEvaluator([1000 + 2 * (block - 1), 1001 + 2 * (block - 1)])

    def seed_texts(self, campaign):
        return [("start", "qqqqqq")]

    def normalize(self, text: str) -> str:
        return text


@register_operator("blocky_letter")
class LetterOp(Operator):
    name, arity = "blocky_letter", 1

    def __init__(self, campaign):
        pass

    def propose(self, ctx, parent_groups):
        out = []
        for (p,) in parent_groups:
            t = list(p.text)
            t[ctx.rng.randrange(len(t))] = ctx.rng.choice("azq")
            out.append(Proposal("".join(t), self.name, (p.id,)))
        return out


register_kind(BlockyKind())


def _campaign(mode: str) -> Campaign:
    return Campaign.model_validate({
        "name": f"race_{mode}", "kind": "blocky", "budget": {"evaluations": 80},
        "search": {"population": 6, "batch_size": 2}, "funnel": {"promote_fraction": 0.5, "mode": mode,
                                                                 "race": {"blocks": 3, "alpha": 0.1}},
        "simplify": {"enabled": False}})


def test_a_racing_campaign_spends_its_budget_on_more_seeds_for_contenders(tmp_path):
    e = Engine(_campaign("race"), tmp_path / "run")
    try:
        summary = e.run()
        raced = {i.id: i for i in e.individuals.values() if "race" in i.meta}
        best = e.ctx.top(1)[0]
    finally:
        e.close()
    assert summary.used == 80                                       # race blocks are paid from the budget
    assert raced and any(i.meta["race"]["dropped"] for i in raced.values())
    assert any(i.meta["race"]["blocks"] == 3 for i in raced.values())
    assert best.meta["race"]["blocks"] >= 2                         # the winner was confirmed on more seeds
    view = RunView(tmp_path / "run")
    try:
        rows = {c["id"]: c for c in view.individuals}
        race_rows = [ev for ev in view.evaluations if ev["phase"] == "race"]
        ranked = view.ranked()
    finally:
        view.close()
    assert race_rows and {ev["fidelity"] for ev in race_rows} <= {"fine@1", "fine@2"}
    assert sum(ev["cost"] for ev in view.evaluations) == 80
    assert ranked[0]["id"] == best.id                               # the stored run ranks as the engine did
    for i in raced.values():
        assert rows[i.id]["score"] == pytest.approx(i.score)
        assert i.score == pytest.approx(i.meta["race"]["score"])


def test_race_blocks_cost_what_their_fidelity_costs(tmp_path):
    c = _campaign("race")
    c.budget.fidelity_cost = {"fine": 3.0}
    e = Engine(c, tmp_path / "run")
    try:
        summary = e.run()
        rows = e.store.evaluations()
    finally:
        e.close()
    race_rows = [r for r in rows if r["phase"] == "race"]
    assert race_rows and all(r["cost"] == 3.0 for r in race_rows)
    assert summary.used == sum(r["cost"] for r in rows) <= 80


def test_a_racing_run_resumes_exactly(tmp_path):
    a = Engine(_campaign("race"), tmp_path / "a")      # stopped after 12 generations (as if killed)
    try:
        a._seed()
        a.save_checkpoint()
        for _ in range(12):
            a.step()
    finally:
        a.close()
    a = Engine(_campaign("race"), tmp_path / "a", resume=True)
    try:
        resumed = a.run()
        raced = sorted((i.id, i.score) for i in a.individuals.values() if "race" in i.meta)
    finally:
        a.close()
    b = Engine(_campaign("race"), tmp_path / "b")
    try:
        whole = b.run()
        assert raced == sorted((i.id, i.score) for i in b.individuals.values() if "race" in i.meta)
    finally:
        b.close()
    assert (resumed.best_id, resumed.best_score, resumed.used) == (whole.best_id, whole.best_score, whole.used)


@pytest.mark.parametrize("kill_after", [16, 40, 55])
def test_a_run_killed_mid_race_resumes_like_an_uninterrupted_one(tmp_path, kill_after):
    """Killed while a race block of an older candidate (the incumbent) was being evaluated: its finished
    blocks are replayed at their cost, not taken as known before the checkpoint."""
    a = Engine(_campaign("race"), tmp_path / "a")
    BlockEvaluator.kill_after = kill_after
    try:
        with pytest.raises(KeyboardInterrupt):
            a.run()
    finally:
        BlockEvaluator.kill_after = None
        a.close()
    a = Engine(_campaign("race"), tmp_path / "a", resume=True)
    try:
        resumed = a.run()
        raced = sorted((i.id, i.score, i.meta["race"]["blocks"]) for i in a.individuals.values() if "race" in i.meta)
        rows_a = [(e["key"], e["fidelity"], e["cost"]) for e in a.store.evaluations()]
    finally:
        a.close()
    b = Engine(_campaign("race"), tmp_path / "b")
    try:
        whole = b.run()
        assert raced == sorted((i.id, i.score, i.meta["race"]["blocks"]) for i in b.individuals.values()
                               if "race" in i.meta)
        assert sorted(rows_a) == sorted((e["key"], e["fidelity"], e["cost"]) for e in b.store.evaluations())
    finally:
        b.close()
    assert (resumed.best_id, resumed.best_score, resumed.used) == (whole.best_id, whole.best_score, whole.used)


def test_a_kind_without_seed_blocks_is_promoted_without_racing(tmp_path):
    from search.core.registry import load_plugins
    load_plugins(["toy_kind"])
    c = Campaign.model_validate({"name": "toyrace", "kind": "toy", "plugins": ["toy_kind"],
                                 "budget": {"evaluations": 12}, "funnel": {"mode": "race"},
                                 "simplify": {"enabled": False}})
    e = Engine(c, tmp_path / "run")
    try:
        summary = e.run()
        events = [ev["message"] for ev in e.store.events("race")]
    finally:
        e.close()
    assert summary.used == 12 and len(events) == 1 and "block_evaluator" in events[0]


def test_a_run_started_before_racing_resumes_with_the_funnel_it_ran_with(tmp_path):
    # a run whose stored campaign has no funnel mode (written before racing existed) and a campaign
    # file that does not set one: it resumes as it ran (quantile), not with today's default (race)
    raw = {"name": "old", "kind": "blocky", "budget": {"evaluations": 40}, "search": {"population": 6, "batch_size": 2},
           "simplify": {"enabled": False}}
    a = Engine(Campaign.model_validate(raw), tmp_path / "old")
    try:
        a._seed()
        a.save_checkpoint()
        stored = a.store.get_meta("campaign")
        del stored["funnel"]["mode"]
        a.store.set_meta(campaign=stored)
    finally:
        a.close()
    b = Engine(Campaign.model_validate(raw), tmp_path / "old", resume=True)
    try:
        assert b.campaign.funnel.mode == "quantile"
        b.run()
        assert not any("race" in i.meta for i in b.individuals.values())
    finally:
        b.close()
    # a file that asks for racing explicitly opts the old run in
    c = Engine(Campaign.model_validate({**raw, "funnel": {"mode": "race"}}), tmp_path / "old", resume=True)
    try:
        assert c.campaign.funnel.mode == "race"
    finally:
        c.close()
