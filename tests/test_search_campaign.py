"""Campaign files: bad input gives one clear error naming the file and the field."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from search.core import CampaignError, load_campaign
from support import campaign_toml

ROOT = Path(__file__).resolve().parents[1]

GOOD = campaign_toml({"name": "c1", "seed_rules": ["adamw"], "tasks": ["quadratic"], "fidelities": ["tiny"],
                      "executor": "inprocess", "budget": {"evaluations": 10}})


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "camp.toml"
    p.write_text(text)
    return p


def test_good_campaign_loads(tmp_path):
    c = load_campaign(_write(tmp_path, GOOD))
    assert c.name == "c1" and c.budget.evaluations == 10 and c.search.strategy == "regularized"
    assert c.resolved_run_dir(tmp_path) == tmp_path / "runs" / "c1"


@pytest.mark.parametrize("text,needles", [
    (GOOD + "\npopulaton = 4\n", ["populaton", "unknown field"]),
    (GOOD.replace("[budget]\nevaluations = 10", "[budget]\nevaluations = 10\nwall = 3"), ["budget.wall", "unknown"]),
    (GOOD.replace("evaluations = 10", "evaluations = \"many\""), ["budget.evaluations"]),
    (GOOD.replace("evaluations = 10", "evaluations = 0"), ["budget.evaluations", "greater"]),
    (GOOD.replace('tasks = ["quadratic"]', 'tasks = ["quadractic"]'), ["quadractic", "known tasks"]),
    (GOOD.replace('fidelities = ["tiny"]', 'fidelities = ["huge"]'), ["fidelities", "huge"]),
    (GOOD.replace('fidelities = ["tiny"]', 'fidelities = ["small", "tiny"]'), ["fidelities", "cheapest first"]),
    (GOOD.replace('seed_rules = ["adamw"]', 'seed_rules = ["adamx"]'), ["seed_rules", "adamx"]),
    (GOOD + "\n[search]\nstrategy = \"annealing\"\n", ["search.strategy", "annealing", "regularized"]),
    (GOOD + "\n[operators]\nrandom = { insrt = 1.0 }\n", ["operators", "insrt"]),
    (GOOD + "\n[operators]\nllm_share = 1.5\n", ["operators.llm_share"]),
    (GOOD.replace('executor = "inprocess"', 'executor = "gpu"'), ["executor"]),
    (GOOD.replace('name = "c1"', 'name = "a b/c"'), ["name"]),
    (GOOD + "\n[evaluator]\nlr_grd = 3\n", ["lr_grd"]),
    ("name = \n", ["not valid TOML"]),
])
def test_bad_campaigns_name_the_file_and_the_field(tmp_path, text, needles):
    p = _write(tmp_path, text)
    with pytest.raises(CampaignError) as ei:
        load_campaign(p)
    msg = str(ei.value)
    assert str(p) in msg
    for n in needles:
        assert n.lower() in msg.lower(), msg


def test_missing_file(tmp_path):
    with pytest.raises(CampaignError, match="not found"):
        load_campaign(tmp_path / "nope.toml")


def test_seed_rule_file_relative_to_the_campaign(tmp_path):
    (tmp_path / "mine.py").write_text("def mine(w, g, lr):\n    w = w - lr * sign(g)\n    return w\n")
    c = load_campaign(_write(tmp_path, GOOD.replace('["adamw"]', '["mine.py", "adamw"]')))
    from search.core import get_kind
    labels = [lab for lab, _ in get_kind("rule").seed_texts(c)]
    assert labels == ["mine", "adamw"]
    (tmp_path / "bad.py").write_text("def bad(w, g):\n    return w.grad\n")
    with pytest.raises(CampaignError, match="bad.py"):
        load_campaign(_write(tmp_path, GOOD.replace('["adamw"]', '["bad.py"]')))


def test_example_campaigns_are_valid():
    for p in sorted((ROOT / "examples").glob("*.toml")):
        load_campaign(p)


def test_cli_reports_bad_campaign_with_exit_status_1(tmp_path):
    p = _write(tmp_path, GOOD + "\npopulaton = 4\n")
    r = subprocess.run([sys.executable, "-m", "search.cli", "run", str(p)], cwd=tmp_path, capture_output=True,
                       text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode == 1
    assert "populaton" in r.stderr and "Traceback" not in r.stderr
