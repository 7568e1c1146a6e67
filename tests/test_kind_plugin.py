"""A kind that is not the project's own (tests/toy_kind.py) runs through campaign, engine, show and export."""
from __future__ import annotations

import inspect

import pytest

from search import KINDS, CampaignError, load_campaign
from search.cli import main
from search.core import Engine, EngineView

TOY = """
name = "toy"
kind = "toy"
plugins = ["toy_kind"]
random_seed = 3

[toy]
target = "search"
start = "aaaaaa"

[budget]
evaluations = 80

[search]
population = 6
batch_size = 4
"""


def test_a_plugin_kind_runs_shows_and_exports(tmp_path, capsys):
    f = tmp_path / "toy.toml"
    f.write_text(TOY)
    c = load_campaign(f)
    assert c.kind == "toy" and c.options.target == "search" and "toy" in KINDS
    assert c.model_dump(mode="json")["toy"] == {"target": "search", "start": "aaaaaa"}

    run = tmp_path / "run"
    assert main(["run", str(f), "--plain", "--run-dir", str(run)]) == 0
    assert main(["show", str(run)]) == 0
    shown = capsys.readouterr().out
    assert "kind toy" in shown and "then letters in place" in shown   # the kind's score_label
    assert "toy target 'search'" in shown                      # the kind's own show lines
    best = shown.split("#1  id ")[1].splitlines()
    score = float(best[0].split("score ")[1].split()[0])
    assert "fine" in best[0] and score > 1 / 6                 # the seed "aaaaaa" has 1 of 6 letters in place

    out = tmp_path / "best.txt"
    assert main(["export", str(run), "-o", str(out)]) == 0
    text = out.read_text()
    assert best[3] == f"    {text}" and set(text) <= set("abcdefghijklmnopqrstuvwxyz")
    assert sum(a == b for a, b in zip(text, "search")) == round(6 * score)

    assert main(["report", str(run)]) == 0
    assert (run / "report.html").read_text().count("class=\"plotly-graph-div\"") >= 1


def test_a_plugin_kind_table_is_parsed_by_its_own_model(tmp_path):
    f = tmp_path / "toy.toml"
    f.write_text(TOY.replace('start = "aaaaaa"', 'strat = "aaaaaa"'))
    with pytest.raises(CampaignError, match="strat"):
        load_campaign(f)
    f.write_text(TOY.replace('kind = "toy"', 'kind = "rule"'))
    with pytest.raises(CampaignError, match=r"\[toy\] table given in a 'rule' campaign"):
        load_campaign(f)



def test_the_engine_has_everything_engine_view_promises(tmp_path):
    """``EngineView`` (what kinds and the core's helpers are given) is honest about ``Engine``."""
    f = tmp_path / "toy.toml"
    f.write_text(TOY)
    eng = Engine(load_campaign(f), tmp_path / "run")
    try:
        members = {n for n, v in vars(EngineView).items()
                   if not n.startswith("_") and (callable(v) or isinstance(v, property))}
        promised = set(EngineView.__annotations__) | members
        assert {"campaign", "kind", "store", "score_variant", "budget_left", "llm"} <= promised
        missing = sorted(n for n in promised if not (hasattr(Engine, n) or n in vars(eng)))
        assert not missing, f"Engine lacks {missing}"
        for n in members - {"budget_left", "llm"}:   # same parameters: a caller typed against the view works
            view_params = list(inspect.signature(getattr(EngineView, n)).parameters)
            assert view_params == list(inspect.signature(getattr(Engine, n)).parameters), n
    finally:
        eng.close()
