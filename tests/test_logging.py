"""Experiment logging: events.jsonl and hall_of_fame.csv always, TensorBoard when asked; read back."""
from __future__ import annotations

import csv
import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from search.cli import main
from search.core import EVENTS_FILE, HALL_OF_FAME_FILE, RunView, load_campaign, read_events
from support import campaign_toml, run_engine

FIELDS = {"name": "logged", "seed_rules": ["sgd_momentum"], "tasks": ["quadratic"], "fidelities": ["small"],
          "executor": "inprocess", "eval_seeds": [0, 1], "lrs": [0.003, 0.03, 0.3], "budget": {"evaluations": 10},
          "search": {"population": 4, "tournament": 2, "batch_size": 2}, "simplify": {"enabled": False}}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A run with ``[logging] tensorboard = true`` (a few seconds)."""
    d = tmp_path_factory.mktemp("logged")
    (d / "c.toml").write_text(campaign_toml(dict(FIELDS, logging={"tensorboard": True})))
    summary, store = run_engine(load_campaign(d / "c.toml"), d / "run")
    store.close()
    return d / "run", summary


def test_events_jsonl_has_every_evaluation_and_generation(logged):
    run, summary = logged
    ev = read_events(run)
    kinds = [e["event"] for e in ev]
    assert kinds[0] == "start" and kinds[-1] == "end"
    view = RunView(run)
    evals = [e for e in ev if e["event"] == "evaluation"]
    assert [e["seq"] for e in evals] == [e["seq"] for e in view.evaluations]
    assert [e["candidate"] for e in evals] == [e["candidate_id"] for e in view.evaluations]
    gens = [e for e in ev if e["event"] == "generation"]
    assert [g["generation"] for g in gens] == list(range(1, summary.generations + 1))
    assert all(abs(sum(g["operator_shares"].values()) - 1) < 1e-9 for g in gens if g["operator_shares"])
    # the best during the search (fidelity reached, then score) never gets worse; the end line has the run's final
    bests = [g["best_score"] for g in gens]
    assert bests == sorted(bests)
    assert "seeded" in kinds and "searched" in kinds          # the engine's own events, by name
    assert ev[-1]["status"] == "done" and ev[-1]["used"] == summary.used
    assert ev[-1]["best_id"] == summary.best_id and ev[-1]["best_score"] == pytest.approx(summary.best_score)
    assert all(isinstance(e["t"], float) for e in ev)


def test_hall_of_fame_is_the_final_ranking_with_intervals(logged):
    run, _ = logged
    with open(run / HALL_OF_FAME_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["rank", "id", "score", "interval", "size", "fidelity", "validation", "source"]
    ranked = RunView(run).ranked()
    assert [int(r["id"]) for r in rows] == [x["id"] for x in ranked]
    top = rows[0]
    assert float(top["score"]) == pytest.approx(ranked[0]["score"], abs=1e-5)
    lo, hi = (float(x) for x in top["interval"].strip("[]").split(","))
    assert lo <= hi and top["source"].startswith("def ")


def test_tensorboard_scalars_read_back(logged):
    run, summary = logged
    ea = EventAccumulator(str(run / "tensorboard"))
    ea.Reload()
    tags = ea.Tags()["scalars"]
    for tag in ("best/score", "population/mean", "population/size", "llm/calls", "budget/used"):
        assert tag in tags, tag
    assert any(t.startswith("operators/share/") for t in tags)
    best = ea.Scalars("best/score")
    assert [s.step for s in best] == list(range(1, summary.generations + 1))
    gens = [e for e in read_events(run) if e["event"] == "generation"]
    assert [s.value for s in best] == pytest.approx([g["best_score"] for g in gens], abs=1e-6)
    assert [s.value for s in ea.Scalars("budget/used")] == [g["used"] for g in gens]


def test_resume_appends_and_cli_flag_turns_tensorboard_on(tmp_path, capsys):
    camp = tmp_path / "c.toml"
    camp.write_text(campaign_toml(dict(FIELDS, name="flag", budget={"evaluations": 4})))
    assert main(["run", str(camp), "--run-dir", str(tmp_path / "r"), "--plain"]) == 0
    assert not (tmp_path / "r" / "tensorboard").exists()
    first = read_events(tmp_path / "r")
    assert main(["run", str(camp), "--run-dir", str(tmp_path / "r"), "--plain", "--resume", "--budget", "8",
                 "--tensorboard", str(tmp_path / "tb")]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    ev = read_events(tmp_path / "r")
    assert ev[: len(first)] == first and [e["event"] for e in ev].count("start") == 2
    assert ev[len(first)]["resumed"] is True
    ea = EventAccumulator(str(tmp_path / "tb"))
    ea.Reload()
    assert "best/score" in ea.Tags()["scalars"]
    lines = (tmp_path / "r" / EVENTS_FILE).read_text().splitlines()
    assert all(json.loads(ln)["event"] for ln in lines)


def test_eval_writes_rule_and_baseline_curves_to_tensorboard(tmp_path, capsys):
    tb = tmp_path / "tb"
    assert main(["eval", "sgd_momentum", "--tasks", "quadratic", "--fidelity", "tiny", "--executor", "inprocess",
                 "--noise-replicates", "0", "--lrs", "0.003,0.03,0.3", "--seeds", "0", "--tensorboard", str(tb)]) == 0
    assert f"tensorboard --logdir {tb}" in capsys.readouterr().err
    assert sorted(p.name for p in tb.iterdir()) == ["sgd_momentum", "tuned_adamw"]
    rule, base = EventAccumulator(str(tb / "sgd_momentum")), EventAccumulator(str(tb / "tuned_adamw"))
    rule.Reload()
    base.Reload()
    loss_r, loss_b = rule.Scalars("loss/quadratic"), base.Scalars("loss/quadratic")
    assert len(loss_r) > 2 and [s.step for s in loss_r] == [s.step for s in loss_b] and loss_r[0].step == 0
    assert loss_r[-1].value < loss_r[0].value             # it trains
    assert "score/overall" in rule.Tags()["scalars"] and "score/overall" not in base.Tags()["scalars"]
