"""The funnel to larger tasks ([funnel.rungs]): screen on the cheap tasks, promote to larger ones."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import dsl
from evaluators import Candidate, RuleEvalConfig
from search.cli import main
from search.core import Campaign, CampaignError, Engine, RunView, parse_campaign
from search.rules.task_eval import TaskSetEvaluator, rung_tasks


def _campaign(**over) -> Campaign:
    return Campaign.model_validate({
        "name": "rungs", "seed_rules": ["adamw", "sgd_momentum"], "search_tasks": ["quadratic"],
        "validation_tasks": [], "fidelities": ["tiny", "small"], "eval_seeds": [0, 1], "executor": "inprocess",
        "evaluator": {"lr_grid": {"values": [1e-2, 1e-1]}, "wd_grid": False, "halving": False},
        "budget": {"evaluations": 16}, "search": {"batch_size": 2, "population": 4},
        "simplify": {"enabled": False},
        "funnel": {"promote_fraction": 0.5, "rungs": {"small": ["rosenbrock"]},
                   "race": {"blocks": 2, "alpha": 0.001}}} | over)


def test_rung_tasks_accumulate_up_the_fidelities():
    rungs = {"small": ["lm_m"], "full": ["lm_l"]}
    fids = ("tiny", "small", "full")
    assert rung_tasks(rungs, fids, "tiny") == []
    assert rung_tasks(rungs, fids, "small") == ["lm_m"]
    assert rung_tasks(rungs, fids, "full") == ["lm_m", "lm_l"]


def test_a_promoted_candidate_trains_on_the_rung_and_races_on_it(tmp_path):
    eng = Engine(_campaign(), tmp_path / "run")
    try:
        assert isinstance(eng.evaluator, TaskSetEvaluator) and eng.evaluator.aggregate == "mean"
        eng.run()
        inds = list(eng.individuals.values())
        rows = eng.store.evaluations()
    finally:
        eng.close()
    screened = [i.results["tiny"] for i in inds if "tiny" in i.results and i.results["tiny"].ok]
    promoted = [i.results["small"] for i in inds if "small" in i.results and i.results["small"].ok]
    assert screened and all(set(r.tasks) == {"quadratic"} for r in screened)
    assert promoted and all(set(r.tasks) == {"quadratic", "rosenbrock"} for r in promoted)
    assert len(promoted) < len(screened)                     # the rung is paid only for the promoted
    for r in promoted:                                        # the score is the mean over both tasks
        assert r.score == pytest.approx(sum(t.score for t in r.tasks.values()) / 2)
    blocks = [r for r in rows if r["phase"] == "race"]
    assert blocks and all(r["fidelity"] == "small@1" for r in blocks)
    view = RunView(tmp_path / "run")
    try:
        raced = [x for x in view.evaluations if x["phase"] == "race"]
    finally:
        view.store.close()
    assert raced and all(set(json.loads(x["result"])["tasks"]) == {"quadratic", "rosenbrock"} for x in raced)


def test_a_race_block_keeps_the_rungs_on_fresh_seeds(tmp_path):
    cfg = RuleEvalConfig(tasks=["quadratic"], seeds=[0, 1], lr_grid={"values": [0.01, 0.1]},
                         executor="inprocess", cache_dir=str(tmp_path))
    ev = TaskSetEvaluator(cfg, "mean", rungs={"small": ["rosenbrock"]}, banked=False)
    try:
        block = ev.with_seeds([1000, 1001])
        assert block.tasks_at("small") == ["quadratic", "rosenbrock"] and block.config.seeds == [1000, 1001]
        r0 = ev.evaluate([Candidate(text=dsl.get_rule("adamw").source())], "small")[0]
        r1 = block.evaluate([Candidate(text=dsl.get_rule("adamw").source())], "small")[0]
    finally:
        ev.close()
    assert r0.ok and r1.ok and not r1.cached and r0.key == r1.key
    assert r0.tasks["rosenbrock"].metric != r1.tasks["rosenbrock"].metric      # other seeds, other runs
    banked = TaskSetEvaluator(cfg, "iqm")
    try:
        assert banked.with_seeds([5, 6]) is None          # a bank's tasks change per generation: no race
    finally:
        banked.close()


@pytest.mark.parametrize("over, what", [
    ({"funnel": {"rungs": {"tiny": ["rosenbrock"]}}}, "cheapest fidelity"),
    ({"funnel": {"rungs": {"full": ["rosenbrock"]}}}, "not one of the campaign's fidelities"),
    ({"funnel": {"rungs": {"small": ["quadratic"]}}}, "already in the search tasks"),
    ({"funnel": {"rungs": {"small": ["rosenbruck"]}}}, "rosenbruck"),
    ({"validation_tasks": ["rosenbrock"]}, "shares task families"),
])
def test_a_bad_rung_is_a_campaign_error_naming_it(over, what):
    d = _campaign().model_dump(exclude_unset=True) | over
    with pytest.raises(CampaignError) as e:
        parse_campaign(d, "bad.toml")
    assert what in str(e.value) and "bad.toml" in str(e.value)


def test_a_kind_without_tasks_refuses_rungs():
    with pytest.raises(CampaignError, match="funnel.rungs"):
        parse_campaign({"name": "p", "kind": "prompt", "funnel": {"rungs": {"small": ["x"]}}}, "p.toml")


def test_check_lists_the_rungs(capsys):
    assert main(["check", str(Path(__file__).resolve().parents[1] / "examples" / "discovery.toml")]) == 0
    out = capsys.readouterr().out
    assert "rung small: the promoted also train on bank:mlp/data=digits,w=256" in out
