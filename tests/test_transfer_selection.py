"""Issue 11, search side: validation tasks decide the ranking, noise-aware tie-breaks (tasks won, Occam),
verify stores and shows its table, overlapping task sets and bad task modules are refused at campaign
start, and a user's task module runs through a campaign. Real training (tiny fidelity), real SQLite."""
from __future__ import annotations

import textwrap

import pytest

from evaluators.base import EvalResult, Status, TaskResult
from search.cli.results import show_text
from search.core import CampaignError, RunView, parse_campaign, run_campaign
from search.core.ranking import final_order, noise_order
from search.rules.tasksets import search_tasks, transfer_tasks, validation_tasks
from search.rules.verify import holds, verify_json, verify_run


def _campaign(name: str, **kw) -> dict:
    d = {"name": name, "seed_rules": ["sgd_momentum", "adamw"], "search_tasks": ["quadratic"],
         "validation_tasks": ["cancer_bce"], "fidelities": ["tiny"], "executor": "inprocess",
         "budget": {"evaluations": 10}, "search": {"population": 4, "batch_size": 2},
         "simplify": {"top": 1, "max_evaluations": 2}, "validation": {"top": 4, "noise": 0.0}}
    d.update(kw)
    return d


@pytest.fixture(scope="module")
def validated_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("val") / "run"
    summary = run_campaign(parse_campaign(_campaign("val")), run, fresh=True)
    return run, summary


# -- ranking --------------------------------------------------------------------------

def test_validation_tasks_decide_the_ranking(validated_run):
    run, summary = validated_run
    view = RunView(run)
    try:
        ranked = view.ranked()
        validated = [c for c in ranked if c["validation"] is not None]
        # [validation] top = 4, plus the seed rules the top 4 do not include ([validation] seeds)
        seeds = {c["id"] for c in ranked if c["operator"] == "seed"}
        assert seeds <= {c["id"] for c in validated}
        assert 4 <= len(validated) <= 4 + len(seeds)
        # validated candidates come first, ordered by their validation score, not the search score
        assert ranked[:len(validated)] == validated
        vs = [c["validation"].score for c in validated]
        assert vs == sorted(vs, reverse=True)
        assert set(validated[0]["validation"].tasks) == {"cancer_bce"}
        # the run's best is the validation winner, and it was validated as simplified
        assert summary.best_id == validated[0]["id"]
        assert validated[0]["meta"]["validation"]["text"]
        phases = {e["phase"] for e in view.evaluations}
        assert {"search", "validation"} <= phases
    finally:
        view.close()


def _r(score: float, won: int) -> EvalResult:
    tasks = {f"t{i}": TaskResult(task=f"t{i}", metric=1.0, score=(0.1 if i < won else -0.1), status=Status.ok)
             for i in range(3)}
    return EvalResult(key="k", fidelity="tiny", score=score, status=Status.ok, tasks=tasks)


def test_noise_order_prefers_tasks_won_then_smaller_programs():
    items = [("big_one_task", 0.300, 1, 40), ("broad", 0.290, 3, 40), ("small_broad", 0.285, 3, 20),
             ("far_behind", 0.200, 3, 5)]
    order = noise_order(items, lambda x: x[1], lambda x: x[2], lambda x: x[3], noise=0.02)
    # within 0.02 of the top: the highest "won" key first (final_order passes net wins), then the smaller program
    assert [x[0] for x in order] == ["small_broad", "broad", "big_one_task", "far_behind"]
    plain = noise_order(items, lambda x: x[1], lambda x: x[2], lambda x: x[3], noise=0.0)
    assert [x[0] for x in plain] == ["big_one_task", "broad", "small_broad", "far_behind"]
    assert _r(0.1, 2).tasks_won == 2


def test_final_order_breaks_ties_by_net_wins_not_wins_alone():
    """Within the noise band a rule that wins one task and loses another (net 0) ranks after one that
    wins a task and loses none (net 1), however short it is; a failed task counts as lost."""
    def res(*scores):
        tasks = {f"t{i}": TaskResult(task=f"t{i}", metric=1.0, score=x, status=Status.ok) for i, x in enumerate(scores)}
        return EvalResult(key="k", fidelity="small", score=0.0, status=Status.ok, tasks=tasks)
    rows = {"short_mixed": (res(0.11, 0.0, -0.05, 0.0), 18), "clean": (res(0.5, 0.0, -0.01, 0.0), 21),
            "baseline_like": (res(0.0, 0.0, 0.0, 0.0), 40)}
    order = final_order(list(rows), level=lambda k: 0, score=lambda k: 0.0, search_result=lambda k: None,
                        validation=lambda k: rows[k][0], size=lambda k: rows[k][1], noise=0.02)
    assert order == ["clean", "short_mixed", "baseline_like"]
    assert rows["short_mixed"][0].tasks_won_by(0.02) == 1 and rows["short_mixed"][0].net_wins_by(0.02) == 0
    failed = res(0.3)
    failed.tasks["t1"] = TaskResult(task="t1", metric=float("nan"), score=0.0, status=Status.diverged)
    assert failed.net_wins_by(0.02) == 0


# -- verify -----------------------------------------------------------------------------

def test_verify_stores_and_shows_its_table(validated_run):
    run, _ = validated_run
    rec = verify_run(run, top=2, tasks=["rosenbrock"], executor="inprocess", noise_replicates=2, log=lambda *_: None)
    assert rec["split"] == "test" and not set(rec["seeds"]) & {0, 1}     # unseen training seeds
    assert len(rec["seeds"]) == 4 and rec["verdict_tasks"] == ["rosenbrock"]
    assert set(rec["noise"]) == {"cancer_bce", "rosenbrock"} and all(x > 0 for x in rec["noise"].values())
    assert rec["transfer_tasks"] == ["rosenbrock"] and rec["validation_tasks"] == ["cancer_bce"]
    cands = [e for e in rec["entries"] if e["kind"] == "candidate"]
    assert len(cands) == 2
    for e in cands:
        assert set(e["tasks"]) == {"cancer_bce", "rosenbrock"}
        assert e["tasks"]["rosenbrock"]["group"] == "transfer"
        assert e["verified"] == pytest.approx(e["tasks"]["rosenbrock"]["score"])
        assert e["holds"] == holds(e) == (e["verdict"] == "holds")
        if e["status"] == "ok":
            assert e["estimate"]["n_seeds"] == 4 and e["estimate"]["n_tasks"] == 1
            assert e["ci"][0] <= e["estimate"]["score"] <= e["ci"][1]
            assert e["tasks"]["rosenbrock"]["noise"] == rec["noise"]["rosenbrock"]
            assert e["describe"].startswith(("holds", "indistinguishable", "worse"))
    adamw = next(e for e in rec["entries"] if e["label"] == "seed adamw")
    assert adamw["verified"] == pytest.approx(0.0)                       # the baseline against itself
    assert adamw["verdict"] == "indistinguishable" and adamw["ci"] == [0.0, 0.0]
    out = verify_json(rec)
    assert out["id"] == cands[0]["id"] and out["verdict"] == cands[0]["verdict"]
    assert {"score", "ci", "p_improvement", "verdict", "tasks", "entries"} <= set(out)
    assert {"score", "ci", "noise"} <= set(out["tasks"]["rosenbrock"])
    assert len(out["entries"]) == len(rec["entries"])
    view = RunView(run)
    try:
        assert view.verification()["entries"][0]["id"] == cands[0]["id"]   # stored in the run's SQLite
    finally:
        view.close()
    text = show_text(run)
    assert "VERIFIED" in text and "search -> validation -> verified" in text
    assert "rosenbrock" in text and "validation " in text
    assert ("does not hold" in text) == (not all(e["holds"] for e in cands))
    from search.report import build_html
    view = RunView(run)
    try:
        page = build_html(view)
    finally:
        view.close()
    assert "Transfer gap" in page and "Validation stage" in page


def test_cli_verify_json_is_one_object(validated_run, capsys):
    import json

    from search.cli import main
    run, _ = validated_run
    assert main(["verify", str(run), "--top", "2", "--tasks", "rosenbrock", "--executor", "inprocess",
                 "--noise-replicates", "2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["verdict"] in ("holds", "indistinguishable", "worse", "failed")
    assert {"score", "ci", "p_improvement", "tasks", "entries", "describe"} <= set(d)
    assert d["tasks"]["rosenbrock"]["group"] == "transfer" and "noise" in d["tasks"]["rosenbrock"]
    assert [e["label"] for e in d["entries"]][:2] == [e["label"] for e in d["entries"] if e["kind"] == "candidate"]


def test_verify_against_another_baseline_is_stored_beside_the_main_one_and_can_skip_validation(validated_run, capsys):
    from search.cli import main
    from search.core import RunStore, db_path
    from search.rules.verify import verify_table
    run, _ = validated_run
    st = RunStore(db_path(run), readonly=True)
    before = st.get_meta("verify")
    st.close()
    rec = verify_run(run, top=1, tasks=["rosenbrock"], executor="inprocess", noise_replicates=1,
                     baseline="sgd_momentum", validation=False, log=lambda *_: None)
    assert rec["baseline"] == "sgd_momentum"
    assert rec["validation_tasks"] == [] and all(set(e["tasks"]) == {"rosenbrock"} for e in rec["entries"])
    own = next(e for e in rec["entries"] if e["label"] == "seed sgd_momentum")
    assert own["verified"] == pytest.approx(0.0) and own["ci"] == [0.0, 0.0]     # the new baseline vs itself
    adamw = next(e for e in rec["entries"] if e["label"] == "seed adamw")
    assert adamw["verified"] != pytest.approx(0.0)                               # AdamW is now a contender
    assert "against tuned sgd_momentum" in verify_table(rec)[0]
    st = RunStore(db_path(run), readonly=True)
    try:
        assert st.get_meta("verify") == before                                   # the main record is untouched
        assert st.get_meta("verify_vs")["sgd_momentum"]["entries"][0]["id"] == rec["entries"][0]["id"]
    finally:
        st.close()
    assert "against tuned sgd_momentum" in show_text(run)       # show prints this verdict too
    from search.report import build_html
    view = RunView(run)
    try:
        assert "against tuned sgd_momentum" in build_html(view)   # and so does the report
    finally:
        view.close()
    assert main(["verify", str(run), "--tasks", "rosenbrock", "--executor", "inprocess", "--noise-replicates", "1",
                 "--baseline", "no_such_rule"]) == 1
    err = capsys.readouterr().err
    assert "no_such_rule" in err and "Traceback" not in err


def test_verify_can_tune_every_rule_on_a_finer_grid_than_the_search(validated_run):
    from evaluators import TUNING_PRESETS
    from search.rules import VerifyError
    from search.rules.verify import verify_table
    run, _ = validated_run
    kw = dict(top=1, tasks=["rosenbrock"], executor="inprocess", noise_replicates=1, validation=False,
              baseline="sgd_momentum", log=lambda *_: None)
    coarse = verify_run(run, **kw)
    fine = verify_run(run, tuning="fine", **kw)
    assert coarse["tuning"] == "campaign" and fine["tuning"] == "fine"
    assert fine["config_hash"] != coarse["config_hash"]          # a different protocol, its own cache entries
    assert TUNING_PRESETS["fine"]["lr_grid"]["points"] > 5      # half-decade steps where the campaign had decades
    assert "tuning preset 'fine'" in verify_table(fine)[0] and "tuning preset" not in verify_table(coarse)[0]
    with pytest.raises(VerifyError, match="not a tuning preset"):
        verify_run(run, tuning="finest", **kw)


def test_holds_needs_a_positive_mean_and_most_tasks():
    # with a stored verdict, the verdict decides (interval and noise floors, evaluators.stats)
    assert holds({"verified": 0.05, "verified_won": 3, "verified_n": 4, "verdict": "holds"})
    assert not holds({"verified": 0.05, "verified_won": 3, "verified_n": 4, "verdict": "indistinguishable"})
    # entries stored before verdicts existed keep their old reading
    assert holds({"verified": 0.05, "verified_won": 3, "verified_n": 4})
    assert not holds({"verified": 0.05, "verified_won": 2, "verified_n": 4})   # one big task, not most
    assert not holds({"verified": -0.01, "verified_won": 3, "verified_n": 4})


# -- campaign-start errors ---------------------------------------------------------------

def test_overlapping_task_sets_are_refused_naming_the_field():
    with pytest.raises(CampaignError, match=r"validation_tasks: shares task families with search_tasks"):
        parse_campaign(_campaign("x", search_tasks=["digits_mlp"], validation_tasks=["digits_logreg"]))
    with pytest.raises(CampaignError, match=r"verify.tasks: shares task families"):
        parse_campaign(_campaign("x", verify={"tasks": ["quadratic"]}))
    with pytest.raises(CampaignError, match=r"give one of them"):
        parse_campaign(_campaign("x", tasks=["quadratic"]))
    with pytest.raises(CampaignError, match=r"test split|split"):
        parse_campaign(_campaign("x", evaluator={"split": "test"}))


def test_bad_task_modules_are_refused_at_campaign_start():
    with pytest.raises(CampaignError, match=r"validation_tasks: task 'no_such_pkg_xyz.tasks:make'.*cannot import"):
        parse_campaign(_campaign("x", validation_tasks=["no_such_pkg_xyz.tasks:make"]))
    with pytest.raises(CampaignError, match=r"search_tasks: task 'proxies:no_such_factory'.*no attribute"):
        parse_campaign(_campaign("x", search_tasks=["proxies:no_such_factory"]))


def test_old_tasks_field_keeps_its_meaning_and_new_campaigns_get_disjoint_defaults():
    old = parse_campaign({"name": "old", "tasks": ["quadratic"], "fidelities": ["tiny"]})
    assert search_tasks(old) == ["quadratic"] and validation_tasks(old) == []
    new = parse_campaign({"name": "new", "fidelities": ["tiny"]})
    import proxies
    fam = {proxies.task_family(t) for t in search_tasks(new)}
    assert validation_tasks(new) and not fam & {proxies.task_family(t) for t in validation_tasks(new)}
    assert not {proxies.task_family(t) for t in transfer_tasks(new)} & (
        fam | {proxies.task_family(t) for t in validation_tasks(new)})


# -- a user's task module ------------------------------------------------------------------

USER_TASKS = textwrap.dedent('''
    import torch
    from torch import nn
    import proxies

    def _data():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(96, 4, generator=g)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]])
        return {"train": (x[:64], y[:64]), "val": (x[64:80], y[64:80]), "test": (x[80:], y[80:])}

    def tiny_regression():
        return proxies.ModuleTask("tiny_regression", lambda: nn.Linear(4, 1), _data,
                                  lambda o, y: ((o - y) ** 2).mean(), batch_size=16,
                                  steps={"tiny": 15, "small": 30, "full": 60})
''')


def test_a_user_task_module_runs_through_a_campaign(tmp_path, monkeypatch):
    (tmp_path / "my_user_tasks_11.py").write_text(USER_TASKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = "my_user_tasks_11:tiny_regression"
    d = _campaign("user", search_tasks=[spec], validation_tasks=["quadratic"], budget={"evaluations": 6},
                  validation={"top": 2})
    summary = run_campaign(parse_campaign(d), tmp_path / "run", fresh=True)
    view = RunView(tmp_path / "run")
    try:
        best = view.ranked()[0]
        assert best["id"] == summary.best_id
        r = best["results"]["tiny"]
        assert set(r.tasks) == {spec} and r.tasks[spec].status == Status.ok
        assert best["validation"] is not None and "quadratic" in best["validation"].tasks
    finally:
        view.close()


def test_a_run_verified_before_intervals_still_displays():
    from search.rules.verify import verdict, verify_table
    old = {"seeds": [2, 3], "fidelity": "tiny", "validation_tasks": ["cancer_bce"], "transfer_tasks": ["rosenbrock"],
           "entries": [{"id": 7, "rank": 1, "label": "#7", "kind": "candidate", "search": 0.1, "search_won": 1,
                        "search_n": 1, "validation": 0.2, "validation_won": 1, "validation_n": 1,
                        "validation_test": 0.1, "validation_test_won": 1, "validation_test_n": 1, "verified": 0.3,
                        "verified_won": 1, "verified_n": 1, "holds": True,
                        "tasks": {"rosenbrock": {"group": "transfer", "score": 0.3, "lr": 0.01, "wd": 0.0,
                                                 "baseline_lr": 0.1, "baseline_wd": 0.0, "status": "ok"}}}]}
    lines = verify_table(old)
    row = next(ln for ln in lines if ln.startswith("#7"))
    assert " - " in row and "yes" in row and "noise floors: -" in "\n".join(lines)
    assert "it holds" in verdict(old) and "verify again" in verdict(old)
