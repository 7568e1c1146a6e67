"""The campaign files the README tells users to run parse, validate, and say what they claim."""
from pathlib import Path

import pytest

from search.core import load_campaign

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_demo_campaign_is_a_rule_search_from_adamw_and_lion_on_the_default_lr_grid():
    c = load_campaign(EXAMPLES / "demo.toml")
    assert c.kind == "rule" and c.name == "demo" and list(c.seed_rules) == ["adamw", "lion"]
    assert list(c.fidelities) == ["tiny", "small"] and c.budget.evaluations > 0
    from evaluators.rules import LrGrid
    assert LrGrid.model_validate(c.evaluator["lr_grid"]).lrs() == pytest.approx(LrGrid().lrs())
    # issue 11: search and validation on disjoint families, two training seeds
    import proxies
    from search.rules.tasksets import search_tasks, validation_tasks
    fam = {proxies.task_family(t) for t in search_tasks(c)}
    assert validation_tasks(c) and not fam & {proxies.task_family(t) for t in validation_tasks(c)}
    assert len(c.eval_seeds) >= 2


def test_discovery_campaign_starts_from_sgd_momentum_with_disjoint_search_validation_and_transfer_sets():
    c = load_campaign(EXAMPLES / "discovery.toml")
    assert list(c.seed_rules) == ["sgd_momentum"] and c.budget.wall_seconds <= 3600
    import proxies
    from search.rules.tasksets import search_tasks, transfer_tasks, validation_tasks
    sets = [search_tasks(c), validation_tasks(c), transfer_tasks(c)]
    fams = [{proxies.task_family(t) for t in s} for s in sets]
    assert len(sets[2]) == 4 and all(not fams[i] & fams[j] for i in range(3) for j in range(i + 1, 3))


def test_prompt_campaign_names_a_generated_task_and_an_algorithm():
    c = load_campaign(EXAMPLES / "prompts.toml")
    assert c.kind == "prompt" and c.options.task == "plural" and c.options.algorithm == "ga"
    assert c.options.select_alpha == pytest.approx(0.1)
