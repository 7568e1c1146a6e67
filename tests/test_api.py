"""The notebook API (search.api): campaigns from dicts and files, a run as DataFrames and JSON."""
from __future__ import annotations

import json

import pytest

import search.api as of
from evaluators import estimate
from search.core import RunStore, RunView
from support import campaign_toml

FIELDS = {"name": "api", "seed_rules": ["sgd_momentum"], "tasks": ["quadratic"], "fidelities": ["small"],
          "executor": "inprocess", "eval_seeds": [0, 1], "lrs": [0.003, 0.03, 0.3], "budget": {"evaluations": 8},
          "search": {"population": 4, "tournament": 2, "batch_size": 2}, "simplify": {"enabled": False}}


@pytest.fixture(scope="module")
def api_run(tmp_path_factory) -> of.Run:
    d = tmp_path_factory.mktemp("api")
    return of.run(FIELDS, d / "run", progress=False)


def test_campaign_from_a_dict_a_file_and_overrides(tmp_path):
    c = of.campaign(FIELDS, budget={"evaluations": 3})
    assert c.name == "api" and c.budget.evaluations == 3 and c.search.population == 4
    (tmp_path / "c.toml").write_text(campaign_toml(FIELDS))
    f = of.campaign(tmp_path / "c.toml", name="api2")
    assert f.name == "api2" and f.source_path == str(tmp_path / "c.toml") and f.budget.evaluations == 8
    with pytest.raises(of.CampaignError, match=r"did you mean \[search\] population"):
        of.campaign(dict(FIELDS, populaton=3))
    with pytest.raises(of.CampaignError, match="a dict, a TOML file path or a Campaign"):
        of.campaign(42)


def test_run_returns_the_run_with_its_summary(api_run):
    assert api_run.summary is not None and api_run.summary.done_reason == "evaluation budget reached"
    assert api_run.campaign["name"] == "api"


def test_candidates_are_the_final_ranking_with_intervals(api_run):
    df = api_run.candidates()
    ranked = RunView(api_run.run_dir).ranked()
    assert list(df["id"]) == [x["id"] for x in ranked] and list(df["rank"]) == list(range(1, len(ranked) + 1))
    ok = df[df["score"].notna()]
    assert (ok["ci_low"] <= ok["ci_high"]).all()
    assert {"validation", "validation_ci_low", "size", "fidelity", "operator", "text"} <= set(df.columns)
    assert df.loc[0, "text"].startswith("def ")
    ts = api_run.task_scores(top=2)
    assert list(ts["task"]) == ["quadratic", "quadratic"] and list(ts["id"]) == list(df["id"][:2])


def test_evaluations_operators_events_and_hall_of_fame(api_run):
    ev = api_run.evaluations()
    assert len(ev) == len(RunView(api_run.run_dir).evaluations) and ev["cost"].sum() == 8
    ops = api_run.operators()
    assert (ops["proposals"] == ops["valid"] + ops["invalid"] + ops["duplicate"]).all()
    events = api_run.events()
    assert events["event"].iloc[0] == "start" and (events["event"] == "evaluation").sum() == len(ev)
    hof = api_run.hall_of_fame()
    assert [int(i) for i in hof["id"]] == [int(i) for i in api_run.candidates(text=False)["id"]]


def test_verify_tables_empty_then_from_the_stored_record(api_run, tmp_path):
    assert api_run.verify().empty and list(api_run.verify().columns) == of.VERIFY_COLUMNS
    assert api_run.verify_tasks().empty
    import shutil
    shutil.copytree(api_run.run_dir, tmp_path / "v")
    est = estimate({"rosenbrock": [0.2, 0.3], "digits_cnn": [-0.1, 0.05]}, n_boot=500)
    entry = {"id": 0, "rank": 1, "label": "#0", "kind": "candidate", "verified": est.score, "holds": False,
             "estimate": est.to_json(), "ci": list(est.ci), "verdict": est.verdict,
             "tasks": {t: {"group": "transfer", "score": te.score, "ci": list(te.ci), "noise": 0.01}
                       for t, te in est.tasks.items()}}
    with RunStore(tmp_path / "v") as st:
        st.set_meta(verify={"seeds": [5], "fidelity": "small", "validation_tasks": [], "transfer_tasks": [],
                            "entries": [entry]})
    r = of.open_run(tmp_path / "v")
    v = r.verify()
    assert v.loc[0, "verdict"] == est.verdict and v.loc[0, "ci_low"] == pytest.approx(est.ci[0])
    vt = r.verify_tasks()
    assert list(vt["task"]) == ["rosenbrock", "digits_cnn"] and (vt["noise"] == 0.01).all()
    assert r.to_json()["verify"][0]["verdict"] == est.verdict


def test_to_json_is_what_show_json_prints(api_run, capsys):
    from search.cli import main
    assert main(["show", str(api_run.run_dir), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(json.dumps(api_run.to_json(), default=str)) == printed


def test_export_and_its_errors(api_run, tmp_path):
    p = api_run.export(tmp_path / "best.py")
    assert p.is_file() and "class ApiRank1" in p.read_text()
    with pytest.raises(of.APIError, match="out of range"):
        api_run.export(tmp_path / "x.py", rank=99)
    with pytest.raises(of.APIError, match="path .*nodir does not exist"):
        api_run.export(tmp_path / "nodir" / "x.py")
    with pytest.raises(of.StoreError, match="no run found"):
        of.open_run(tmp_path / "nothing")


def test_run_refuses_an_existing_run_unless_told_and_resumes_with_a_bar(api_run, tmp_path, capsys):
    with pytest.raises(of.StoreError, match="resume=True to continue it"):
        of.run(FIELDS, api_run.run_dir, progress=False)
    import shutil
    shutil.copytree(api_run.run_dir, tmp_path / "more")
    r = of.run(FIELDS, tmp_path / "more", resume=True, budget={"evaluations": 10})
    assert r.evaluations()["cost"].sum() == 10
    err = capsys.readouterr().err
    assert "api:" in err and "10/10" in err          # the tqdm bar, desc = campaign name, over the budget


def _notebook_code(path) -> list[str]:
    import json
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_the_api_tour_notebook_is_the_script():
    """examples/api_tour.ipynb holds exactly the code of examples/api_tour.py, cell by cell."""
    from pathlib import Path
    ex = Path(__file__).resolve().parents[1] / "examples"
    script = (ex / "api_tour.py").read_text().split('"""', 2)[2]
    script = script.replace("from __future__ import annotations\n", "")
    norm = lambda t: [ln for ln in t.splitlines() if ln.strip()]
    assert norm("\n".join(_notebook_code(ex / "api_tour.ipynb"))) == norm(script)


@pytest.mark.slow
def test_the_api_tour_notebook_runs(tmp_path, monkeypatch, capsys):
    """Every code cell of the notebook, in order, in one namespace (as a kernel runs them)."""
    from pathlib import Path
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__main__"}
    for i, code in enumerate(_notebook_code(Path(__file__).resolve().parents[1] / "examples" / "api_tour.ipynb")):
        exec(compile(code, f"api_tour.ipynb[{i}]", "exec"), ns)
    out = capsys.readouterr().out
    assert "evaluation budget reached" in out and "wrote runs/api_tour/best_rule.py" in out
    assert (tmp_path / "runs" / "api_tour" / "hall_of_fame.csv").is_file()
    assert "not verified yet" in out
