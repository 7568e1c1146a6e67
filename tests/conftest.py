"""Fixtures shared by the test modules: library rules, small campaigns, running a campaign.

Plain helpers and constants (for ``parametrize`` lists) are in support.py and dsl_cases.py.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dsl.library import RULES
from support import ADAMW, campaign_toml, run_engine, small_rule_campaign


@pytest.fixture
def library_rules() -> dict[str, str]:
    """The rule library's sources by name (``dsl.library.RULES``)."""
    return dict(RULES)


@pytest.fixture
def adamw_source() -> str:
    return ADAMW


@pytest.fixture
def write_campaign(tmp_path: Path) -> Callable[..., Path]:
    """``write_campaign(text_or_fields, name="camp.toml")``: a campaign file in ``tmp_path``."""
    def write(campaign: str | dict, name: str = "camp.toml") -> Path:
        p = tmp_path / name
        p.write_text(campaign if isinstance(campaign, str) else campaign_toml(campaign))
        return p
    return write


@pytest.fixture
def small_campaign() -> Callable[..., str]:
    """``small_campaign(name, executor=..., seed=..., budget=..., batch=...)``: a seconds-long rule campaign."""
    return small_rule_campaign


@pytest.fixture
def run_campaign_to_end() -> Callable:
    """``run_campaign_to_end(campaign, run_dir, **engine_kw) -> (summary, read-only store)``."""
    return run_engine
