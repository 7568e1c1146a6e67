"""The campaign files the README tells users to run parse, validate, and say what they claim."""
from pathlib import Path

import pytest

import proxies
from evaluators import TUNING_PRESETS, RuleEvalConfig
from search.core import load_campaign
from search.rules.kind import eval_config_dict
from search.rules.tasksets import search_tasks, transfer_tasks, validation_tasks

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_demo_campaign_is_a_rule_search_from_adamw_and_lion_under_the_default_tuning():
    c = load_campaign(EXAMPLES / "demo.toml")
    assert c.kind == "rule" and c.name == "demo" and list(c.seed_rules) == ["adamw", "lion"]
    assert list(c.fidelities) == ["tiny", "small"] and c.budget.evaluations > 0
    # the campaign default tuning (the budget preset): lrs 1e-4..1 (AdamW not at a grid edge) x 3 wds
    cfg = RuleEvalConfig(**eval_config_dict(c, None))
    assert cfg.lr_grid.lrs()[0] == pytest.approx(1e-4) and cfg.lr_grid.lrs()[-1] == pytest.approx(1.0)
    assert cfg.wd_grid is not None and len(cfg.wd_grid.values) == 3 and cfg.halving is not None
    # issue 11: search and validation on disjoint families, two training seeds
    fam = {proxies.task_family(t) for t in search_tasks(c)}
    assert validation_tasks(c) and not fam & {proxies.task_family(t) for t in validation_tasks(c)}
    assert len(c.eval_seeds) >= 2


def test_discovery_campaign_starts_from_sgd_momentum_with_disjoint_search_validation_and_transfer_sets():
    c = load_campaign(EXAMPLES / "discovery_sgdm.toml")   # the shipped rule's campaign (fixed task lists)
    assert list(c.seed_rules) == ["sgd_momentum"] and c.budget.wall_seconds <= 3600
    sets = [search_tasks(c), validation_tasks(c), transfer_tasks(c)]
    fams = [{proxies.task_family(t) for t in s} for s in sets]
    assert len(sets[2]) == 4 and all(not fams[i] & fams[j] for i in range(3) for j in range(i + 1, 3))


def test_prompt_campaign_names_a_generated_task_and_an_algorithm():
    c = load_campaign(EXAMPLES / "prompts.toml")
    assert c.kind == "prompt" and c.options.task == "plural" and c.options.algorithm == "ga"
    assert c.options.select_alpha == pytest.approx(0.1)


def test_discovery_campaign_pins_the_thorough_tuning_its_shipped_rule_was_found_under():
    """clipped_rms_momentum's provenance names examples/discovery_sgdm.toml: the file must keep the
    settings it ran with (the thorough preset) even though the campaign default is the budget one."""
    cfg = RuleEvalConfig(**eval_config_dict(load_campaign(EXAMPLES / "discovery_sgdm.toml"), None))
    thorough = RuleEvalConfig(tasks=cfg.tasks, **TUNING_PRESETS["thorough"])
    assert cfg.wd_grid == thorough.wd_grid and cfg.halving == thorough.halving
    assert cfg.lr_grid.lrs() == pytest.approx(thorough.lr_grid.lrs())
