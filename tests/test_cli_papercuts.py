"""The researcher's paper cuts: each bad input gives a clear message (never a traceback), show prints
intervals, failure reasons and verdicts, export says what it wrote and warns when it should."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from evaluators import describe, estimate
from search.cli import main
from search.cli.rundata import candidate_records, invalid_groups, reason_group
from search.core import RunStore, RunView, load_campaign
from support import campaign_toml, run_engine

#: two seeds (so intervals exist), two fidelities, a validation task SGD-momentum diverges on
FIELDS = {"name": "cuts", "seed_rules": ["sgd_momentum", "adamw"], "search_tasks": ["quadratic"],
          "validation_tasks": ["rosenbrock"], "fidelities": ["tiny", "small"], "executor": "inprocess",
          "eval_seeds": [0, 1], "lrs": [0.003, 0.03, 0.3], "budget": {"evaluations": 12},
          "search": {"population": 6, "tournament": 2, "batch_size": 2}, "simplify": {"enabled": False},
          "validation": {"top": 2}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished run (about 10 s), with three invalid proposals added by hand at different places."""
    d = tmp_path_factory.mktemp("cuts")
    camp = d / "cuts.toml"
    camp.write_text(campaign_toml(FIELDS))
    _, store = run_engine(load_campaign(camp), d / "run")
    store.close()
    with RunStore(d / "run") as st:
        base = st.count("candidates") + 100
        for i, where in enumerate(("line 1, col 1", "line 3, col 9", "line 2, col 5")):
            st.add_candidate(id=base + i, kind="rule", text="x", canonical=None, key=None, parents=[0],
                             operator="llm_mutate", generation=1, state="invalid",
                             reason=f"invalid: {where}: unknown function 'foo'")
    return d / "run"


# -- export and report ---------------------------------------------------------------------------

@pytest.mark.parametrize("verb,target", [("export", "nodir/x.py"), ("report", "nodir/r.html")])
def test_output_into_a_missing_folder_is_a_clear_error(run_dir, tmp_path, verb, target, capsys):
    assert main([verb, str(run_dir), "-o", str(tmp_path / target)]) == 1   # an exception would fail here
    err = capsys.readouterr().err
    assert "nodir does not exist" in err and "mkdir -p" in err
    assert not (tmp_path / "nodir").exists()


def test_export_rank_out_of_range_names_the_valid_range(run_dir, tmp_path, capsys):
    n = len(RunView(run_dir).ranked())
    assert main(["export", str(run_dir), "--rank", str(n + 5), "-o", str(tmp_path / "x.py")]) == 1
    err = capsys.readouterr().err
    assert f"--rank {n + 5}: out of range" in err and f"--rank 1..{n}" in err
    assert not (tmp_path / "x.py").exists()


def test_export_of_a_seed_says_it_is_the_unchanged_seed_and_warns(run_dir, tmp_path, capsys):
    ranked = RunView(run_dir).ranked()
    rank = next(i for i, x in enumerate(ranked, 1) if x["meta"].get("seed") == "sgd_momentum")
    assert main(["export", str(run_dir), "--rank", str(rank), "-o", str(tmp_path / "s.py")]) == 0
    out, err = capsys.readouterr()
    assert "unchanged seed rule 'sgd_momentum'" in err
    assert "below tuned AdamW" in err                 # -0.05 on the quadratic at every seed
    assert "failed validation (diverged" in err and "rosenbrock" in err
    assert f"class CutsRank{rank}" in out and f"opt = CutsRank{rank}(model.parameters(), lr=" in out


def test_export_of_a_screened_only_candidate_warns(run_dir, tmp_path, capsys):
    ranked = RunView(run_dir).ranked()
    rank = next(i for i, x in enumerate(ranked, 1) if x["level"] == 0)
    assert main(["export", str(run_dir), "--rank", str(rank), "-o", str(tmp_path / "t.py")]) == 0
    assert "only screened at the cheapest fidelity (tiny)" in capsys.readouterr().err


def test_exported_usage_line_runs(run_dir, tmp_path, capsys, monkeypatch):
    assert main(["export", str(run_dir), "-o", str(tmp_path / "cuts_best_rule.py")]) == 0
    line = capsys.readouterr().out
    usage = line.split("use it like any torch optimizer: ")[1].strip()
    monkeypatch.syspath_prepend(str(tmp_path))
    code = "import torch\nmodel = torch.nn.Linear(3, 1)\n" + usage.replace("; ", "\n") + \
        "\nmodel(torch.ones(2, 3)).sum().backward()\nw0 = model.weight.detach().clone()\nopt.step()\n"
    env: dict = {}
    exec(compile(code, "usage", "exec"), env)   # the printed line, as a user pastes it
    assert not env["model"].weight.detach().equal(env["w0"])


# -- show ----------------------------------------------------------------------------------------

def test_show_prints_the_validation_failure_reason(run_dir, capsys):
    assert main(["show", str(run_dir), "--top", "12"]) == 0
    out = capsys.readouterr().out
    assert "validation failed: diverged at all 9 learning rates" in out and "on task rosenbrock" in out


def test_show_groups_invalid_reasons_by_message(run_dir, capsys):
    assert reason_group("invalid: line 3, col 9: unknown function 'foo'") == "unknown function 'foo'"
    groups = dict(invalid_groups(RunView(run_dir)))
    assert groups["unknown function 'foo'"] == 3
    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "3 x unknown function 'foo'" in out and "line 1, col 1" not in out


def test_show_intervals_are_the_bootstrap_of_the_paired_seeds(run_dir):
    view = RunView(run_dir)
    recs = candidate_records(view)
    rec = next(r for r in recs if r["score"] is not None and r["fidelity"] == "small")
    x = view.by_id[rec["id"]]
    tr = x["results"]["small"].tasks["quadratic"]
    ratios = np.clip(np.log(np.array(tr.extra["baseline_seed_metrics"]) / np.array(tr.extra["seed_metrics"])),
                     -0.5, 0.5)
    # one task, two seeds: the bootstrap means are r0, r1 and their mean; the 95% interval spans r0..r1
    assert rec["ci"] == pytest.approx([ratios.min(), ratios.max()], abs=1e-9)
    assert math.isclose(rec["per_task"]["quadratic"]["ci"][0], ratios.min(), abs_tol=1e-9)


def test_show_json_is_one_object_with_intervals_and_operators(run_dir, capsys):
    assert main(["show", str(run_dir), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["campaign"] == "cuts" and d["kind"] == "rule" and d["fidelities"] == ["tiny", "small"]
    assert len(d["candidates"]) == len(RunView(run_dir).ranked())
    top = d["candidates"][0]
    assert {"rank", "id", "score", "ci", "validation", "validation_ci", "text", "per_task"} <= set(top)
    assert top["ci"][0] <= top["score"] + 1e-9 or top["ci"][0] <= top["ci"][1]
    assert any(o["operator"] for o in d["operators"]) and d["verify"] is None
    assert {"reason": "unknown function 'foo'", "count": 3} in d["invalid_reasons"]


def test_show_prints_stored_verdicts_and_old_verifications_still_show(run_dir, tmp_path, capsys):
    import shutil
    d = tmp_path / "copy"
    shutil.copytree(run_dir, d)
    est = estimate({"rosenbrock": [0.2, 0.3], "digits_cnn": [0.1, 0.15]}, n_boot=500)
    entry = {"id": 1, "rank": 1, "label": "#1", "kind": "candidate", "search": 0.0, "validation": None,
             "verified": est.score, "verified_won": 2, "verified_n": 2, "validation_test": None,
             "validation_test_won": 0, "validation_test_n": 0, "holds": True,
             "tasks": {"rosenbrock": {"group": "transfer", "score": 0.25}}}
    old = {"seeds": [5, 6], "fidelity": "small", "validation_tasks": [], "transfer_tasks": ["rosenbrock"],
           "entries": [entry]}
    with RunStore(d) as st:
        st.set_meta(verify=old)
    assert main(["show", str(d)]) == 0                      # an old verification: no estimate, still shows
    assert "verdicts" not in capsys.readouterr().out
    with RunStore(d) as st:
        st.set_meta(verify=old | {"entries": [entry | {"estimate": est.to_json(), "ci": list(est.ci),
                                                        "verdict": est.verdict}]})
    assert main(["show", str(d)]) == 0
    assert f"#1: {describe(est)}" in capsys.readouterr().out


# -- names and campaign files ----------------------------------------------------------------------

def test_rule_names_get_a_did_you_mean(capsys):
    assert main(["rule", "check", "lino"]) == 1
    assert "did you mean 'lion'?" in capsys.readouterr().err


def test_campaign_typos_list_the_allowed_keys_and_the_nearest(tmp_path, capsys):
    f = dict(FIELDS, name="typo", populaton=3, budget={"evaluatons": 5})
    (tmp_path / "c.toml").write_text(campaign_toml(f))
    assert main(["check", str(tmp_path / "c.toml")]) == 1
    err = capsys.readouterr().err
    assert "budget.evaluatons: unknown field (did you mean 'evaluations'?); allowed in [budget]: evaluations" in err
    assert "populaton: unknown field (did you mean [search] population?)" in err
    assert "allowed at the top level: " in err and "budget, " in err and "campaign.py" not in err


def test_evaluator_table_typos_list_its_keys(tmp_path, capsys):
    (tmp_path / "c.toml").write_text(campaign_toml(dict(FIELDS, evaluator={"lr_grd": 5})))
    assert main(["check", str(tmp_path / "c.toml")]) == 1
    err = capsys.readouterr().err
    assert "lr_grd: unknown field (did you mean 'lr_grid'?); allowed in [evaluator]: " in err and "wd_grid" in err


def test_task_and_seed_names_get_a_did_you_mean(tmp_path, capsys):
    (tmp_path / "a.toml").write_text(campaign_toml(dict(FIELDS, search_tasks=["quadratc"])))
    (tmp_path / "b.toml").write_text(campaign_toml(dict(FIELDS, seed_rules=["adamm"])))
    assert main(["check", str(tmp_path / "a.toml")]) == 1
    assert "did you mean 'quadratic'?" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "b.toml")]) == 1
    assert "did you mean 'adam'?" in capsys.readouterr().err


def test_check_validates_without_running(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text(campaign_toml(dict(FIELDS, run_dir=str(tmp_path / "r"))))
    assert main(["check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "seeds: sgd_momentum (size 15), adamw (size 40)" in out and "ok: optforge run" in out
    assert not (tmp_path / "r").exists()
    llm = tmp_path / "llm.toml"
    llm.write_text(campaign_toml(dict(FIELDS, llm={"backend": "scripted", "replies": "nope.jsonl"},
                                      operators={"llm_share": 0.5})))
    assert main(["check", str(llm)]) == 1
    assert "llm.replies: 'nope.jsonl' is not a file" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("optforge ")


def test_run_names_get_a_did_you_mean(run_dir, tmp_path, monkeypatch, capsys):
    import shutil
    shutil.copytree(run_dir, tmp_path / "runs" / "cuts")
    monkeypatch.chdir(tmp_path)
    assert main(["show", "cuts", "--top", "1"]) == 0
    capsys.readouterr()
    assert main(["show", "cust"]) == 1
    assert "cust: no run found (did you mean 'cuts'?)" in capsys.readouterr().err
