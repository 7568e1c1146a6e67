"""``optforge eval``: one JSON object with the interval and verdict, the protocol it scored with,
discovered rule names and did-you-mean (real training at tiny fidelity)."""
import json

import pytest

import dsl
from search.cli import main
from search.rules import TUNING_DEFAULTS

FAST = ["--tasks", "quadratic,digits_logreg", "--fidelity", "tiny", "--executor", "inprocess"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTFORGE_CACHE", str(tmp_path / "cache.sqlite"))


def _shipped_name() -> str:
    names = dsl.list_discovered() or list(dsl.RETIRED)
    assert names, "a discovered (or retired) rule is shipped"
    return names[0]


def test_json_is_one_object_with_interval_verdict_and_noise(capsys):
    assert main(["eval", "lion", *FAST, "--seeds", "0,1,2", "--json", "--noise-replicates", "2"]) == 0
    d = json.loads(capsys.readouterr().out)            # exactly one JSON document on stdout
    for k in ("score", "ci", "p_improvement", "verdict", "tasks", "protocol", "describe"):
        assert k in d
    assert d["verdict"] in ("holds", "indistinguishable", "worse")
    assert d["ci"][0] <= d["score"] <= d["ci"][1] and 0 <= d["p_improvement"] <= 1
    assert d["n_seeds"] == 3 and d["n_tasks"] == 2 and d["protocol"] == "eval-default"
    for t in ("quadratic", "digits_logreg"):
        cell = d["tasks"][t]
        assert cell["ci"][0] <= cell["score"] <= cell["ci"][1]
        assert cell["noise"] is not None and cell["noise"] > 0       # a measured floor
        assert cell["beyond_noise"] == (cell["score"] > cell["noise"])
        assert len(cell["seed_metrics"]) == 3
    assert d["describe"].split(":")[0] in ("holds", "indistinguishable from tuned AdamW", "worse than tuned AdamW")


def test_human_output_has_the_interval_and_the_protocol(capsys):
    assert main(["eval", "adamw", *FAST, "--noise-replicates", "0"]) == 0
    out = capsys.readouterr().out
    assert "CI" in out and "protocol eval-default: 9 lrs" in out
    # AdamW against itself: zero on every seed, so never "holds"
    assert "indistinguishable from tuned AdamW: +0.000 [+0.000, +0.000]" in out


def test_protocol_campaign_default_scores_like_a_campaign(capsys):
    assert main(["eval", "sgd_momentum", *FAST, "--protocol", "campaign-default", "--json",
                 "--noise-replicates", "0"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["protocol"] == "campaign-default"
    wds = TUNING_DEFAULTS["wd_grid"]["values"]
    assert f"x 3 wds {wds}" in d["protocol_text"] and "per-task clip +-0.5" in d["protocol_text"]
    extra = d["result"]["tasks"]["quadratic"]["extra"]
    assert len(extra["lrs"]) == 5 * len(wds) and extra["wds"] is not None   # the lr x wd grid
    assert "copy_steps" in extra                                               # successive halving
    assert all(abs(t["score"]) <= 0.5 for t in d["tasks"].values())           # task clip 0.5
    assert main(["eval", "sgd_momentum", *FAST, "--json", "--noise-replicates", "0"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["protocol"] == "eval-default" and "wds" not in plain["result"]["tasks"]["quadratic"]["extra"]


def test_a_discovered_rule_name_is_accepted(capsys):
    name = _shipped_name()
    assert main(["eval", name, "--tasks", "quadratic", "--fidelity", "tiny", "--executor", "inprocess",
                 "--seeds", "0", "--lrs", "1e-2,1e-1", "--noise-replicates", "0"]) == 0
    assert name in capsys.readouterr().out


def test_an_unknown_name_gets_a_suggestion(capsys):
    name = _shipped_name()
    assert main(["eval", name[:-2], "--tasks", "quadratic"]) == 1
    err = capsys.readouterr().err
    assert f"did you mean {name!r}?" in err and "Traceback" not in err
    assert main(["eval", "adamww", "--tasks", "quadratic"]) == 1
    assert "did you mean 'adamw'?" in capsys.readouterr().err
    assert main(["eval", "adamw", "--tasks", "quadratic", "--level", "2"]) == 1
    assert "--level" in capsys.readouterr().err
