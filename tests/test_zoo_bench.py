"""bench/zoo.py: every rule tuned alike, ranked against tuned AdamW with intervals, as a Markdown table."""
import sys
from pathlib import Path

import pytest

from evaluators import VERDICTS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import zoo  # noqa: E402


def test_zoo_rules_are_the_library_and_the_discovered_rules_and_unknown_names_are_refused():
    import dsl
    pool = zoo.zoo_rules()
    assert list(pool)[:len(dsl.list_rules())] == dsl.list_rules() and set(dsl.DISCOVERED) <= set(pool)
    assert list(zoo.zoo_rules(["muon", "adamw"])) == ["muon", "adamw"]
    with pytest.raises(SystemExit, match="unknown rule.*'adamx'"):
        zoo.zoo_rules(["adamx"])


def test_zoo_ranks_rules_against_tuned_adamw_with_intervals_and_writes_the_table(tmp_path):
    rules = zoo.zoo_rules(["sgd", "adamw", "adam"], discovered=False)
    rec = zoo.run_zoo(rules, ["quadratic", "digits_logreg"], [0, 1], "tiny", executor="inprocess", n_boot=500)
    rows = {r["rule"]: r for r in rec["rows"]}
    assert set(rows) == {"sgd", "adamw", "adam"}
    base = rows["adamw"]["estimate"]
    assert base["score"] == 0 and base["ci"] == [0, 0] and base["verdict"] == "indistinguishable"
    scores = [r["estimate"]["score"] for r in rec["rows"]]
    assert scores == sorted(scores, reverse=True)                 # ranked, best first
    for r in rec["rows"]:
        e = r["estimate"]
        assert e["ci"][0] <= e["score"] <= e["ci"][1] and e["verdict"] in VERDICTS
        assert e["n_tasks"] == 2 and e["n_seeds"] == 2 and set(r["tasks"]) == {"quadratic", "digits_logreg"}
        assert r["describe"].startswith(("holds", "indistinguishable", "worse"))
        assert all(c["wd"] in (0.0, 0.1) for c in r["tasks"].values())   # tuned on the wd grid too
    text = zoo.markdown(rec, "1.00 1.00 1.00")
    assert "| rank | rule | score [95% CI] |" in text and "load average 1.00 1.00 1.00 before" in text
    assert sum(line.startswith("| ") for line in text.splitlines()) == 1 + 3
    for r in rec["rows"]:
        assert f"| {r['rule']} | {r['estimate']['score']:+.3f} [" in text
    out, js = tmp_path / "zoo.md", tmp_path / "zoo.json"
    assert zoo.main(["--rules", "adamw", "--tasks", "quadratic", "--seeds", "0", "--fidelity", "tiny",
                     "--executor", "inprocess", "--noise-replicates", "0", "--no-discovered",
                     "--out", str(out), "--json", str(js)]) == 0
    assert "| 1 | adamw | +0.000 [+0.000, +0.000] |" in out.read_text() and js.exists()


def test_a_time_limit_stops_before_the_next_batch_and_lists_the_rules_left():
    rules = zoo.by_priority(zoo.zoo_rules(["sgd", "muon", "adamw"], discovered=False))
    assert list(rules) == ["adamw", "muon", "sgd"]                # AdamW first, then the priority list
    rec = zoo.run_zoo(rules, ["quadratic"], [0], "tiny", executor="inprocess", batch=1, time_limit_s=0.0)
    assert rec["rows"] == [] and rec["skipped"] == ["adamw", "muon", "sgd"]
    assert "Not measured (the run's time limit came first): adamw, muon, sgd." in zoo.markdown(rec)
