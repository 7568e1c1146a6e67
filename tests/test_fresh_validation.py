"""The validation stage re-estimates candidates on seeds the search never used, and the final
ranking and the run's best use those fresh estimates (with their interval), never the search's
own, lucky or not. A small kind of this file's own (registered like any plug-in) makes the luck
exact: one candidate's search seeds happen to favour it. The rule kind's stage gets fresh seeds by
default, refuses overlapping ones, and runs on the search's process pool."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

import dsl
from evaluators import Candidate, EvalResult, Evaluator, Status, TaskResult
from search.core import Campaign, CampaignError, Engine, KindPlugin, RunView, parse_campaign, register_kind
from search.core.ranking import ValidationConfig, final_order

SEARCH_SEEDS = [0, 1]
#: true quality (mean log ratio vs the baseline) of each candidate
QUALITY = {"solid": 0.10, "lucky": 0.0, "plain": -0.05}


def _noise(text: str, seed: int) -> float:
    """Per-seed noise: small, except that "lucky" draws +0.4 on the search's seeds."""
    if text == "lucky" and seed in SEARCH_SEEDS:
        return 0.4
    return 0.01 * ((7 * seed + len(text)) % 3 - 1)


class NoisyEvaluator(Evaluator):
    """Two tasks; per seed a loss exp(-(quality + noise)) against a baseline loss of 1 (paired seeds)."""
    kind = "noisy"
    fidelities = ("only",)

    def __init__(self, seeds: list[int]):
        self.seeds = list(seeds)

    def key(self, candidate: Candidate) -> str:
        return candidate.text

    def evaluate(self, candidates, fidelity, on_result=None):
        out = []
        for i, c in enumerate(candidates):
            tasks = {}
            for t in ("t1", "t2"):
                ratios = [QUALITY[c.text] + _noise(c.text, s) for s in self.seeds]
                tasks[t] = TaskResult(task=t, metric=float(sum(math.exp(-r) for r in ratios) / len(ratios)),
                                      baseline=1.0, score=sum(ratios) / len(ratios),
                                      extra={"seed_metrics": [math.exp(-r) for r in ratios],
                                             "baseline_seed_metrics": [1.0] * len(ratios)})
            r = EvalResult(key=c.text, fidelity=fidelity, status=Status.ok, tasks=tasks,
                           score=sum(t.score for t in tasks.values()) / len(tasks))
            if on_result is not None:
                on_result(i, r)
            out.append(r)
        return out


class NoisyKind(KindPlugin):
    name = "noisy"

    def make_evaluator(self, campaign, run_dir: Path) -> NoisyEvaluator:
        return NoisyEvaluator(SEARCH_SEEDS)

    def make_validation_evaluator(self, campaign, run_dir, search_evaluator=None) -> NoisyEvaluator:
        return NoisyEvaluator(campaign.validation.fresh_seeds(SEARCH_SEEDS))

    def seed_texts(self, campaign):
        return [(t, t) for t in QUALITY]

    def normalize(self, text: str) -> str:
        return text


register_kind(NoisyKind())


def test_a_lucky_search_score_is_ranked_by_its_fresh_estimate(tmp_path):
    c = Campaign.model_validate({"name": "lucky", "kind": "noisy", "budget": {"evaluations": 3},
                                 "simplify": {"enabled": False}, "validation": {"top": 2, "noise": 0.0}})
    e = Engine(c, tmp_path / "run")
    try:
        summary = e.run()
        by_text = {i.text: i for i in e.individuals.values()}
        assert e.ctx.top(1)[0].text == "lucky"                    # the search's own ranking is fooled
        assert e.validator.seeds == [101, 102]                    # fresh: not the search's 0, 1
    finally:
        e.close()
    assert summary.best_id == by_text["solid"].id and summary.best_fidelity == "validation"
    assert summary.best_score == pytest.approx(0.10, abs=0.02)   # the fresh estimate, not a search score
    view = RunView(tmp_path / "run")
    try:
        ranked = view.ranked()
        assert [r["text"] for r in ranked] == ["solid", "lucky", "plain"]
        rec = {r["text"]: r["meta"]["validation"] for r in ranked}
    finally:
        view.close()
    assert rec["lucky"]["search_score"] == pytest.approx(0.4, abs=0.02)
    assert rec["lucky"]["score"] == pytest.approx(0.0, abs=0.02)
    est = rec["solid"]["estimate"]
    assert est["n_tasks"] == 2 and est["n_seeds"] == 2 and set(est["tasks"]) == {"t1", "t2"}
    lo, hi = est["ci"]
    assert lo <= est["score"] <= hi and est["score"] == pytest.approx(rec["solid"]["score"], abs=1e-9)


def test_final_order_uses_validation_scores_whatever_the_search_scores():
    def res(score: float) -> EvalResult:
        return EvalResult(key="k", fidelity="x", score=score, status=Status.ok,
                          tasks={"t": TaskResult(task="t", metric=1.0, score=score)})
    items = [("lucky", 0.5, res(0.0)), ("solid", 0.2, res(0.1)), ("unvalidated", 0.9, None)]
    order = final_order(items, level=lambda x: 0, score=lambda x: x[1], search_result=lambda x: None,
                        validation=lambda x: x[2], size=lambda x: 1.0, noise=0.0)
    assert [x[0] for x in order] == ["solid", "lucky", "unvalidated"]


def test_fresh_seeds_avoid_the_search_and_verify_and_overlaps_are_refused():
    assert ValidationConfig().fresh_seeds([0, 1]) == [101, 102]
    assert ValidationConfig().fresh_seeds([3]) == [103, 104]          # at least two
    assert ValidationConfig(eval_seeds=[7, 8]).fresh_seeds([0, 1]) == [7, 8]
    with pytest.raises(ValueError, match="validation.eval_seeds: \\[1\\]"):
        ValidationConfig(eval_seeds=[1, 9]).fresh_seeds([0, 1])
    d = {"name": "overlap", "seed_rules": ["adamw"], "search_tasks": ["quadratic"], "validation_tasks": ["cancer_bce"],
         "eval_seeds": [0, 1], "validation": {"eval_seeds": [1, 2]}}
    with pytest.raises(CampaignError, match="validation.eval_seeds"):
        parse_campaign(d)


def test_rule_validation_uses_fresh_seeds_and_the_searchs_process_pool(tmp_path):
    c = parse_campaign({"name": "pool", "seed_rules": ["adamw"], "search_tasks": ["quadratic"],
                        "validation_tasks": ["cancer_bce"], "fidelities": ["tiny"], "executor": "pool",
                        "evaluator": {"workers": 1}})
    e = Engine(c, tmp_path / "run")
    try:
        assert e.evaluator.config.seeds == [0, 1] and e.validator.config.seeds == [101, 102]
        assert e.validator.executor is e.evaluator.executor
        sgd = Candidate(text=dsl.get_rule("sgd").source())
        assert e.evaluator.evaluate([sgd], "tiny")[0].ok
        pids = list(e.evaluator.executor.pids)
        r = e.validator.evaluate([sgd], "tiny")[0]
        assert r.ok and list(e.evaluator.executor.pids) == pids and len(pids) == 1   # no second pool
        assert len(r.tasks["cancer_bce"].extra["seed_metrics"]) == 2
    finally:
        e.close()


def test_rule_validation_verdicts_stand_against_measured_noise_floors(tmp_path):
    """The stage measures each validation task's noise floor (tuned AdamW against itself on disjoint
    seeds) and the fresh estimates count a task as won only beyond it; 0 replicates measure none."""
    def run(name: str, replicates: int) -> dict:
        c = parse_campaign({"name": name, "seed_rules": ["sgd_momentum", "adamw"], "search_tasks": ["quadratic"],
                            "validation_tasks": ["cancer_bce"], "fidelities": ["tiny"], "executor": "inprocess",
                            "budget": {"evaluations": 4}, "search": {"population": 2, "batch_size": 2},
                            "simplify": {"enabled": False},
                            "validation": {"top": 2, "noise": 0.0, "noise_replicates": replicates}})
        e = Engine(c, tmp_path / name)
        try:
            e.run()
        finally:
            e.close()
        view = RunView(tmp_path / name)
        try:
            return {r["text"]: r["meta"]["validation"] for r in view.ranked() if "validation" in r["meta"]}
        finally:
            view.close()

    with_floor = run("floored", 1)
    assert with_floor
    for rec in with_floor.values():
        floor = rec["noise"]["cancer_bce"]
        assert math.isfinite(floor) and floor >= 0.0
        task = rec["estimate"]["tasks"]["cancer_bce"]
        assert task["noise"] == pytest.approx(floor)
        assert task["beyond_noise"] == (task["score"] > floor)
    without = run("unfloored", 0)
    assert all(rec["noise"] == {} and rec["estimate"]["tasks"]["cancer_bce"]["noise"] is None
               for rec in without.values())
