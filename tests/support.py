"""Helpers several test modules share (imported by name; pytest puts tests/ on sys.path).

Fixtures built on them are in conftest.py. Kept apart because module-level constants and
``parametrize`` lists need plain imports, which conftest.py is not meant for.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsl.library import RULES
from search.core import Campaign, Engine, RunStore, RunSummary

#: The library's AdamW source (the tests parse, compile and fingerprint this text).
ADAMW = RULES["adamw"]


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def campaign_toml(fields: dict[str, Any]) -> str:
    """A campaign file's text: top-level keys first, then one ``[table]`` per dict value, in order."""
    top = [f"{k} = {toml_value(v)}" for k, v in fields.items() if not isinstance(v, dict)]
    tables = [f"[{k}]\n" + "".join(f"{kk} = {toml_value(vv)}\n" for kk, vv in v.items())
              for k, v in fields.items() if isinstance(v, dict)]
    return "\n" + "\n".join(top) + "\n" + "".join(tables)


def small_rule_campaign(name: str, *, executor: str = "inprocess", seed: int = 0, budget: int = 24,
                        batch: int = 2, fidelities: tuple[str, ...] = ("small",)) -> str:
    """A campaign that runs in seconds: SGD-momentum on the quadratic, three lrs, one seed."""
    return campaign_toml({
        "name": name, "seed_rules": ["sgd_momentum"], "tasks": ["quadratic"], "fidelities": list(fidelities),
        "executor": executor, "eval_seeds": [0], "lrs": [0.003, 0.03, 0.3], "random_seed": seed,
        "budget": {"evaluations": budget}, "search": {"population": 6, "tournament": 2, "batch_size": batch},
        "simplify": {"enabled": False}, "funnel": {"mode": "quantile"}})   # counts: the search evaluator only


def run_engine(campaign: Campaign, run_dir: Path, **kw: Any) -> tuple[RunSummary, RunStore]:
    """Run a campaign to its end; the summary and the run's store (read-only, caller closes it)."""
    e = Engine(campaign, run_dir, **kw)
    try:
        summary = e.run()
    finally:
        e.close()
    return summary, RunStore(e.store.path, readonly=True)
