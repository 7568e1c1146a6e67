"""The sampled task bank: specs, sampling, re-parameterization, family splits, bank campaigns."""
from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import dsl
import proxies
from evaluators import (
    Candidate,
    EvalResult,
    Evaluator,
    RuleEvalConfig,
    Status,
    TaskResult,
    floored_log_ratios,
    per_seed_log_ratios,
)
from proxies.tasks import build_model, format_spec, parse_spec, registry, reparameterize
from search.cli import main
from search.core import DB_NAME, Campaign, CampaignError, Engine, RunStore, RunView, load_campaign, parse_campaign
from search.rules import RuleKind, verify_run
from search.rules.bank_track import overfitting, slope, track_validation
from search.rules.task_eval import TaskSetEvaluator, aggregate_result, iqm
from search.rules.tasksets import bank_plan, check_task_sets, transfer_tasks, validation_tasks

FAMS = ["mlp", "conv", "sequence", "autoencoder", "regression", "memorization"]


def test_sampling_is_deterministic_per_seed():
    a = proxies.sample_tasks(FAMS, 8, seed=3)
    assert a == proxies.sample_tasks(FAMS, 8, seed=3)
    assert a != proxies.sample_tasks(FAMS, 8, seed=4)
    assert len(set(a)) == 8
    # every family is drawn once before any repeats
    assert {proxies.bank_family(t) for t in a[:6]} == set(FAMS)


@pytest.mark.parametrize("family", FAMS)
def test_specs_round_trip_and_resolve(family):
    rng = random.Random(11)
    for _ in range(5):
        spec = proxies.sample_tasks([family], 1, rng.randrange(10**6))[0]
        fam, values = parse_spec(spec)
        assert fam == family and format_spec(fam, values) == spec
        task = proxies.resolve_task(spec)
        assert task.name == spec and proxies.task_family(spec) == family
        assert task.steps["small"] == values["h"] and task.steps["tiny"] < task.steps["small"] < task.steps["full"]


def test_non_canonical_specs_parse_to_the_canonical_name():
    fam, v = parse_spec("bank:memorization/c=4,n=256,w=8.0,bs=32,h=50,seed=1")
    assert format_spec(fam, v) == "bank:memorization/n=256,c=4,w=8,bs=32,h=50,seed=1"


@pytest.mark.parametrize("spec, what", [
    ("bank:nope/x=1", "unknown bank family"),
    ("bank:memorization/n=256,c=4,w=8,bs=32,seed=1", "missing h"),
    ("bank:memorization/n=256,c=4,w=8,bs=32,h=50,seed=1,d=3", "do(es) not apply"),
    ("bank:memorization/n=256,c=4,w=8,bs=32,h=abc,seed=1", "expected an integer"),
    ("bank:memorization/n=1,c=4,w=8,bs=32,h=50,seed=1", "must lie in"),
    ("bank:mlp/data=iris,w=16,depth=2,act=tanh,norm=none,bs=16,h=100,rp=1,seed=0", "rp=1 needs"),
])
def test_bad_specs_say_what_is_wrong(spec, what):
    with pytest.raises(proxies.BankSpecError) as e:
        proxies.resolve_task(spec)
    assert what in str(e.value) and isinstance(e.value, proxies.TaskLoadError)


def _inputs(spec: str) -> torch.Tensor:
    return proxies.resolve_task(spec).data["val"][0][:64]


@pytest.mark.parametrize("spec0", [
    "bank:mlp/data=gauss,d=8,c=3,sep=1,noise=0,w=32,depth=3,act=relu,norm=none,bs=32,h=60,rp=0,seed=5",
    "bank:mlp/data=gauss,d=8,c=3,sep=1,noise=0,w=32,depth=2,act=gelu,norm=layer,bs=32,h=60,rp=0,seed=5",
    "bank:regression/data=teacher,d=4,noise=0.1,w=16,depth=2,act=tanh,norm=batch,bs=32,h=60,rp=0,seed=2",
    "bank:conv/data=protos,c=4,noise=0.3,ch=4,depth=2,act=relu,norm=none,bs=32,h=60,rp=0,seed=1",
    "bank:autoencoder/data=lowrank,d=16,r=2,noise=0.05,w=16,z=2,act=relu,bs=32,h=60,rp=0,seed=3",
])
def test_reparameterization_keeps_the_function_and_changes_the_weights(spec0):
    spec1 = spec0.replace("rp=0,", "rp=1,")
    x = _inputs(spec0)
    m0, m1 = build_model(spec0, seed=4).eval(), build_model(spec1, seed=4).eval()
    tol = 2e-3 if "norm=layer" in spec0 or "norm=batch" in spec0 else 1e-5   # the norms' epsilon
    with torch.no_grad():
        torch.testing.assert_close(m1(x), m0(x), rtol=tol, atol=tol)
    w0, w1 = dict(m0.named_parameters()), dict(m1.named_parameters())
    changed = [k for k in w0 if not torch.allclose(w0[k], w1[k])]
    assert changed, "the re-parameterization changed no weight"
    # the task's own initial parameters carry the re-parameterization too
    p0, p1 = proxies.resolve_task(spec0).init(4), proxies.resolve_task(spec1).init(4)
    assert any(not torch.allclose(p0[k], p1[k]) for k in p0)


def test_reparameterize_skips_what_it_cannot_keep_exact():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    before = [p.clone() for p in m.parameters()]
    assert reparameterize(m, 1.0, torch.Generator().manual_seed(0)) == 0
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))


def test_bank_tasks_train_through_the_stacked_path():
    spec = "bank:memorization/n=256,c=4,w=8,bs=32,h=60,seed=1"
    out = proxies.resolve_task(spec).sweep(dsl.get_rule("adamw"), [1e-2, 1e-1], [0, 1], "tiny")
    assert out.final.shape == (2, 2) and out.task == spec
    assert (out.curves[:, :, -1] < out.curves[:, :, 0]).all()      # it learns


def test_families_split_disjointly():
    split = proxies.split_families(FAMS, seed=0, n_validation=2, n_test=1)
    parts = [set(split[k]) for k in ("search", "validation", "test")]
    assert sum(map(len, parts)) == len(FAMS) and set().union(*parts) == set(FAMS)
    assert [len(p) for p in parts] == [3, 2, 1]
    assert split == proxies.split_families(FAMS, seed=0, n_validation=2, n_test=1)
    with pytest.raises(proxies.BankSpecError, match="cannot be split"):
        proxies.split_families(["mlp", "conv"], seed=0, n_validation=1, n_test=1)


def _campaign(**bank) -> Campaign:
    return Campaign.model_validate({
        "name": "bank", "seed_rules": ["adamw", "sgd_momentum"], "search_tasks": ["quadratic"],
        "fidelities": ["tiny"], "eval_seeds": [0, 1], "executor": "inprocess",
        "evaluator": {"lr_grid": {"values": [1e-2, 1e-1]}, "wd_grid": False, "halving": False},
        "budget": {"evaluations": 4}, "search": {"batch_size": 2, "population": 4},
        "simplify": {"enabled": False}, "validation": {"fidelity": "tiny", "top": 1},
        "bank": {"families": ["memorization", "regression", "autoencoder"], "per_generation": 1,
                 "validation": 1, "test": 1, "track_every": 1, "overfit_window": 2} | bank})


def test_bank_plan_splits_by_family_and_keeps_named_tasks():
    c = _campaign()
    plan = bank_plan(c)
    fams = [plan.search_families, plan.validation_families, plan.test_families]
    assert all(len(f) == 1 for f in fams) and len({f[0] for f in fams}) == 3
    assert plan == bank_plan(c)
    assert [proxies.bank_family(t) for t in plan.validation] == plan.validation_families
    assert transfer_tasks(c) == plan.test and validation_tasks(c) == plan.validation
    g1 = plan.generation_tasks(1)
    assert g1[0] == "quadratic" and g1 == plan.generation_tasks(1) and g1 != plan.generation_tasks(2)
    check_task_sets(c)
    bad = _campaign(search_families=["memorization"], validation_families=["memorization"],
                    test_families=["regression"])
    with pytest.raises(ValueError, match="shares memorization"):
        bank_plan(bad)
    with pytest.raises(ValueError, match="unknown bank family 'mlpp'"):
        bank_plan(_campaign(families=["mlpp", "conv", "mlp"]))


def test_a_campaign_mixing_named_and_bank_tasks_runs_and_resumes_with_the_same_banks(tmp_path):
    c = _campaign()
    plan = bank_plan(c)
    eng = Engine(c, tmp_path / "run")
    try:
        assert eng.evaluator.tasks == plan.generation_tasks(0)
        eng.run()
        # each generation trained on its own draw (named task first)
        assert eng.generation >= 1 and eng.evaluator.tasks == plan.generation_tasks(eng.generation)
        ok = {i.generation: i for i in eng.individuals.values() if "tiny" in i.results and i.results["tiny"].ok}
        assert len(ok) >= 2
        for g, ind in ok.items():
            assert set(ind.results["tiny"].tasks) == set(plan.generation_tasks(g))
        recorded = eng.store.get_meta("bank")
        track = eng.store.get_meta("bank_track")
        kinds = {e["kind"] for e in eng.store.events()}
    finally:
        eng.close()
    assert recorded["validation"] == plan.validation and recorded["test"] == plan.test
    assert track and all(p["validation_score"] is not None for p in track)
    assert {"bank", "bank_validation"} <= kinds
    view = RunView(tmp_path / "run")
    try:
        shown = "\n".join(RuleKind().show_lines(view))
    finally:
        view.store.close()
    assert "task bank: search families" in shown and "interquartile mean" in shown and "g1 " in shown
    # a resumed run (more budget) keeps the recorded banks, even when sampling would now differ
    store = RunStore(tmp_path / "run" / DB_NAME)
    store.set_meta(bank=recorded | {"validation": recorded["validation"][:1], "test": ["quadratic"]})
    store.close()
    c2 = c.model_copy(update={"budget": c.budget.model_copy(update={"evaluations": 6})})
    eng = Engine(c2, tmp_path / "run", resume=True)
    try:
        assert eng.kind.run_plan(eng).test == ["quadratic"]
        assert eng.validator.tasks == recorded["validation"][:1]
        eng.run()
        assert eng.store.get_meta("bank")["test"] == ["quadratic"]
        assert len(eng.store.get_meta("bank_track")) > len(track)
    finally:
        eng.close()


def test_iqm_and_the_overfitting_flag():
    assert iqm([1.0, 2.0, 3.0]) == 2.0
    assert iqm([-10.0, 1.0, 2.0, 50.0]) == 1.5           # floor(4/4) = 1 dropped from each end
    assert slope([1, 2, 3], [0.0, 1.0, 2.0]) == pytest.approx(1.0)
    rising_falling = [{"generation": g, "search_score": 0.1 * g, "validation_score": -0.1 * g} for g in range(4)]
    assert overfitting(rising_falling, 3)[0]
    both_rising = [p | {"validation_score": 0.05 * p["generation"]} for p in rising_falling]
    assert not overfitting(both_rising, 3)[0]
    # an unchanged best: equal scores up to rounding are not a trend (slopes of order 1e-17 once were)
    flat = [{"generation": g, "search_score": -0.004 + 1e-17 * g, "validation_score": -1e-17 * g} for g in range(4)]
    assert not overfitting(flat, 3)[0]
    tiny = [{"generation": g, "search_score": 0.002 * g, "validation_score": -0.002 * g} for g in range(4)]
    assert not overfitting(tiny, 3)[0]                    # 0.004 across the window: below MIN_CHANGE
    assert not overfitting(rising_falling[:2], 3)[0]      # too few points


def test_the_discovery_campaign_starts_from_the_zoo_and_uses_the_bank():
    c = load_campaign(Path(__file__).resolve().parents[1] / "examples" / "discovery.toml")
    assert {"adamw", "muon"} <= set(c.seed_rules) and c.bank is not None
    plan = bank_plan(c)
    fams = [set(plan.search_families), set(plan.validation_families), set(plan.test_families)]
    assert all(fams) and not (fams[0] & fams[1] or fams[0] & fams[2] or fams[1] & fams[2])
    assert len(plan.validation) == 4 and transfer_tasks(c) == plan.test and len(plan.test) >= 3
    check_task_sets(c)
    # the funnel promotes to a model larger than any the search's families draw
    (rung,) = c.funnel.rungs["small"]
    assert proxies.bank_family(rung) in plan.search_families
    size = lambda spec: sum(p.numel() for p in build_model(spec, 0).parameters())  # noqa: E731
    drawn = proxies.sample_tasks(["mlp"], 30, seed=5)
    assert size(rung) > 4 * max(size(t) for t in drawn)


def test_command_line_task_lists_keep_bank_specs_whole(capsys):
    spec = "bank:memorization/n=256,c=4,w=8,bs=32,h=60,seed=1"
    assert proxies.split_task_list(f"quadratic, {spec},digits_logreg") == ["quadratic", spec, "digits_logreg"]
    assert main(["eval", "adamw", "--tasks", f"{spec},quadratic", "--fidelity", "tiny", "--executor", "inprocess",
                 "--lrs", "0.01,0.1", "--seeds", "0,1", "--noise-replicates", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert spec in json.dumps(out) and "quadratic" in json.dumps(out)


def test_verify_checks_a_bank_run_on_its_test_bank_with_the_interquartile_mean(tmp_path):
    c = _campaign(track_every=0)
    eng = Engine(c, tmp_path / "run")
    try:
        eng.run()
    finally:
        eng.close()
    rec = verify_run(tmp_path / "run", top=1, fidelity="tiny", seeds=[2, 3], noise_replicates=1,
                     executor="inprocess", with_seeds=False, log=lambda *a: None)
    plan = bank_plan(c)
    assert rec["transfer_tasks"] == plan.test and rec["validation_tasks"] == plan.validation
    est = rec["entries"][0]["estimate"]
    assert est is not None and est["aggregate"] == "iqm" and set(est["tasks"]) == set(plan.test)


@pytest.mark.parametrize("bank, what", [
    ({"families": ["mlp", "cnv", "regression"]}, "unknown bank family 'cnv'"),
    ({"families": ["mlp", "conv"]}, "cannot be split"),
    ({"track_fidelity": "huge"}, "bank.track_fidelity"),
    ({"per_generation": 0}, "per_generation"),
])
def test_a_bad_bank_table_is_a_campaign_error_naming_it(bank, what):
    with pytest.raises(CampaignError) as e:
        parse_campaign({"name": "x", "bank": bank}, "bad.toml")
    assert what in str(e.value) and "bad.toml" in str(e.value)


def test_a_long_search_does_not_keep_every_drawn_task():
    specs = proxies.sample_tasks(["memorization"], registry.PREFIXED_KEPT + 10, seed=5)
    first = proxies.resolve_task(specs[0])
    assert proxies.resolve_task(specs[0]) is first           # built once while it is recent
    for s in specs[1:]:
        proxies.resolve_task(s)
    assert len(registry._PREFIXED) <= registry.PREFIXED_KEPT
    again = proxies.resolve_task(specs[0])                    # rebuilt on demand, the same task
    assert again is not first and again.name == first.name and again.steps == first.steps


class _ScriptedValidator(Evaluator):
    """Validation scores set by the test (what a real validation bank would measure)."""

    def __init__(self):
        self.score = 0.0

    def key(self, candidate):
        return candidate.text

    def evaluate(self, candidates, fidelity, on_result=None):
        return [EvalResult(key=c.text, fidelity=fidelity, score=self.score) for c in candidates]


def test_search_rising_while_validation_falls_is_reported_once(tmp_path):
    store = RunStore(tmp_path / DB_NAME)
    best = SimpleNamespace(id=7, text="rule", score=0.0)
    eng = SimpleNamespace(generation=0, validator=_ScriptedValidator(), store=store, fidelities=("tiny",),
                          campaign=SimpleNamespace(kind="rule"), ctx=SimpleNamespace(top=lambda k: [best]),
                          event=lambda kind, message, **data: store.add_event(kind, message, data))
    try:
        for g, (search, val) in enumerate([(0.10, 0.05), (0.12, 0.06), (0.15, 0.07), (0.18, 0.04),
                                           (0.20, 0.03), (0.25, 0.01)], start=1):
            eng.generation, best.score, eng.validator.score = g, search, val
            assert track_validation(eng, every=1, fidelity=None, window=3)["validation_score"] == val
        assert track_validation(SimpleNamespace(**{**vars(eng), "generation": 7}), 2, None, 3) is None  # off cadence
        track = store.get_meta("bank_track")
        warnings = store.events("meta_overfitting")
    finally:
        store.close()
    assert [p["generation"] for p in track] == [1, 2, 3, 4, 5, 6]
    assert [p["overfitting"] for p in track] == [False, False, False, True, True, True]
    assert len(warnings) == 1 and warnings[0]["data"]["generation"] == 4


def test_results_are_cached_per_task_spec_and_aggregated_by_iqm(tmp_path):
    a, b = proxies.sample_tasks(["memorization"], 2, seed=9)
    cfg = RuleEvalConfig(tasks=["quadratic", a], seeds=[0, 1], lr_grid={"values": [0.01, 0.1]},
                         executor="inprocess", cache_dir=str(tmp_path))
    ev = TaskSetEvaluator(cfg, "iqm")
    lion = Candidate(text=dsl.get_rule("lion").source())
    try:
        ra = ev.evaluate([lion], "tiny")[0]
        ev.set_tasks(["quadratic", b])
        rb = ev.evaluate([lion], "tiny")[0]
        ev.set_tasks(["quadratic", a])
        ra2 = ev.evaluate([lion], "tiny")[0]
    finally:
        ev.close()
    assert set(ra.tasks) == {"quadratic", a} and set(rb.tasks) == {"quadratic", b} and not rb.cached
    assert ra2.cached and ra2.score == ra.score and ev.key(lion) == ra.key == rb.key
    assert ev.trained == 2
    assert ra.score == pytest.approx(sum(t.score for t in ra.tasks.values()) / 2)   # n < 4: the plain mean


def test_the_iqm_aggregate_drops_the_extremes_from_four_tasks():
    scores = {"a": -0.5, "b": 0.02, "c": 0.04, "d": 0.5}     # two clipped, degenerate tasks
    r = EvalResult(key="k", fidelity="tiny", score=0.015,
                   tasks={t: TaskResult(task=t, metric=1.0, score=s) for t, s in scores.items()})
    assert aggregate_result(r, "iqm").score == pytest.approx(0.03)
    assert aggregate_result(r, "mean") is r
    failed = r.model_copy(update={"status": Status.diverged})
    assert aggregate_result(failed, "iqm").score == r.score


def test_losses_below_a_tasks_solved_level_tie():
    # both rules solve the task (0.015 and 0.001 nats under a 0.02 floor): a tie, not a +0.5 clip
    assert floored_log_ratios([0.001], [0.015], False, solved=0.02) == pytest.approx([0.0])
    assert floored_log_ratios([0.001], [0.015], False) == pytest.approx([np.log(15)])
    # one reaches it, the other does not: measured from the floor
    assert floored_log_ratios([0.001], [0.04], False, solved=0.02) == pytest.approx([np.log(2)])
    assert floored_log_ratios([0.9], [0.8], True, solved=0.5) == pytest.approx([np.log(0.9 / 0.8)])


@pytest.mark.parametrize("family, floor", [("conv", 0.02), ("regression", 1e-3)])
def test_bank_tasks_carry_their_solved_level_into_scores_and_cache_keys(family, floor):
    spec = proxies.sample_tasks([family], 1, seed=3)[0]
    task = proxies.get_task(spec)
    assert task.metric_floor == floor
    assert proxies.get_task("digits_mlp").metric_floor == 0.0
    tr = TaskResult(task=spec, metric=0.001, score=0.0,
                    extra={"seed_metrics": [0.001, 0.5 * floor], "baseline_seed_metrics": [0.9 * floor, 3 * floor],
                           "metric_floor": floor})
    assert per_seed_log_ratios(tr) == pytest.approx([0.0, np.log(3)])
    cfg = RuleEvalConfig(tasks=[spec], seeds=[0], lr_grid={"values": [0.01]}, executor="inprocess")
    before = cfg.result_hash()
    try:
        task.metric_floor = 2 * floor
        assert cfg.result_hash() != before
    finally:
        task.metric_floor = floor


@pytest.mark.parametrize("seed", [948505, 1, 2])
def test_features_constant_in_training_stay_finite_scale_held_out(seed):
    # digits has pixels that are 0 in every training image of some splits and not in a held-out one
    from proxies.tasks import bank_data
    splits = bank_data.sklearn_classification("digits", seed, flat=True)
    for name, (x, _) in splits.items():
        assert float(x.abs().max()) < 100, name
