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


def test_prompt_campaign_names_a_generated_task_and_an_algorithm():
    c = load_campaign(EXAMPLES / "prompts.toml")
    assert c.kind == "prompt" and c.options.task == "plural" and c.options.algorithm == "ga"
    assert c.options.select_alpha == pytest.approx(0.1)
