"""Fair tuning and robust scores in RuleEvaluator: lr x wd grid, successive halving, per-task clipping,
tasks won, and users' own tasks (module:factory specs) through the in-process and pool executors."""
from __future__ import annotations

import math
import textwrap

import pytest
from pydantic import ValidationError

from evaluators import (
    TUNING_PRESETS,
    Candidate,
    EvalResult,
    LrGrid,
    RuleEvalConfig,
    RuleEvaluator,
    Status,
    SuccessiveHalving,
    TaskResult,
    WdGrid,
    log_ratio,
    tasks_won,
)
from evaluators.scoring import task_score
from evaluators.sweeps import SweepSummary

# SGD with L2-style weight decay: the fixed point of x on the "pull" task is 2 / (1 + wd)
SGDW = """def sgdw(w, g, lr, wd):
    w = w - lr * (g + wd * w)
    return w
"""
# The metric ||x - 1||^2 is 0 only at wd = 1, and only a large lr gets there within the steps.
PULL = '''
import torch
from proxies import StackedTask

class Pull(StackedTask):  # metric val_loss, weight decay 0: StackedTask's defaults
    name = "pull"
    steps = {"tiny": 150, "small": 300, "full": 600}

    def init(self, seed):
        return {"x": torch.zeros(4) + 0.01 * seed}

    def loss(self, p, ctx, t):
        return 0.5 * ((p["x"] - 2.0) ** 2).sum(-1)

    def evaluate(self, p, ctx, split="val"):
        return {f"{split}_loss": ((p["x"] - 1.0) ** 2).sum(-1)}

def pull():
    return Pull()
'''
LRS = [1e-3, 1e-2, 1e-1]
WDS = [0.0, 0.1, 1.0, 10.0]


@pytest.fixture
def pull_spec(tmp_path, monkeypatch):
    (tmp_path / "optforge_pull_task.py").write_text(textwrap.dedent(PULL))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "optforge_pull_task:pull"


def _config(spec: str, **kw) -> RuleEvalConfig:
    kw.setdefault("executor", "inprocess")
    return RuleEvalConfig(tasks=[spec], lr_grid=LrGrid(values=LRS), seeds=[0], baseline=SGDW,
                          wd_grid=WdGrid(values=WDS), **kw)


def test_lr_wd_tuning_picks_the_right_corner(pull_spec):
    with RuleEvaluator(_config(pull_spec)) as ev:
        r = ev.evaluate([Candidate(text=SGDW)], "tiny")[0]
    assert r.ok, r.reason
    t = r.tasks[pull_spec]
    assert t.best_lr == 0.1 and t.extra["best_wd"] == 1.0 and t.extra["baseline_wd"] == 1.0
    assert t.metric < 1e-6 and t.extra["wds"] == WDS * len(LRS)
    assert t.extra["per_lr"][len(WDS) * 2 + 2] == pytest.approx(t.metric)   # (lr 0.1, wd 1) is the point
    assert r.score == 0.0 and r.tasks_won == 0                  # the rule is its own baseline


def test_successive_halving_finds_the_same_corner_for_less(pull_spec):
    cfg = _config(pull_spec, halving=SuccessiveHalving(rungs=[(0.3, 3), (0.6, 1)]))
    with RuleEvaluator(cfg) as ev:
        r = ev.evaluate([Candidate(text=SGDW)], "tiny")[0]
    t = r.tasks[pull_spec]
    assert t.best_lr == 0.1 and t.extra["best_wd"] == 1.0
    full_cost = len(LRS) * len(WDS) * 150
    assert 0 < t.extra["copy_steps"] < 0.5 * full_cost


def test_a_user_task_runs_through_the_process_pool(pull_spec):
    """The worker imports the spec's module through the sys.path sent with each job."""
    with RuleEvaluator(_config(pull_spec, executor="pool", workers=1)) as ev:
        r = ev.evaluate([Candidate(text=SGDW)], "tiny")[0]
    assert r.ok, r.reason
    assert r.tasks[pull_spec].extra["best_wd"] == 1.0


def test_bad_task_specs_fail_the_config():
    with pytest.raises(ValidationError, match="cannot import module 'no_such_pkg_q'"):
        RuleEvalConfig(tasks=["no_such_pkg_q:task"])
    with pytest.raises(ValidationError, match="unknown task.*package.module:factory"):
        RuleEvalConfig(tasks=["imagenet"])
    with pytest.raises(ValidationError, match="increasing fractions"):
        SuccessiveHalving(rungs=[(0.5, 2), (0.25, 1)])
    with pytest.raises(ValidationError, match="distinct"):
        WdGrid(values=[0.1, 0.1])


def test_new_options_are_off_by_default_and_hashed_when_on():
    base = RuleEvalConfig(tasks=["quadratic"])
    assert base.wd_grid is None and base.halving is None and base.task_clip is None and base.clip == 5.0
    hashes = {base.result_hash(), RuleEvalConfig(tasks=["quadratic"], wd_grid=WdGrid()).result_hash(),
              RuleEvalConfig(tasks=["quadratic"], halving=SuccessiveHalving()).result_hash(),
              RuleEvalConfig(tasks=["quadratic"], task_clip=0.5).result_hash()}
    assert len(hashes) == 4
    assert RuleEvalConfig(tasks=["quadratic"], task_clip=9.0).clip == 5.0
    assert WdGrid(values=[0.1, 1.0, 10.0], relative=True).wds(1e-2) == pytest.approx([1e-3, 1e-2, 1e-1])
    assert WdGrid(values=[0.1, 1.0], relative=True).wds(0.0) == [0.0]


def _summary(metric: float, hib: bool = False) -> SweepSummary:
    return SweepSummary(task="t", higher_is_better=hib, lrs=[1e-2], seeds=[0, 1],
                        final=[[metric, metric]], diverged=[[False, False]], best=0)


def test_clipping_and_tasks_won_arithmetic():
    base = _summary(1.0)
    assert log_ratio(_summary(0.5), base) == pytest.approx(math.log(2))
    assert task_score(_summary(0.5), base, 0.5) == 0.5                 # log 2 = 0.69 clipped
    assert task_score(_summary(1e-9), base, 0.5) == 0.5
    assert task_score(_summary(4.0), base, 0.5) == -0.5
    assert task_score(_summary(0.9), base, 0.5) == pytest.approx(math.log(1 / 0.9))
    assert log_ratio(_summary(2.0, hib=True), _summary(1.0, hib=True)) == pytest.approx(math.log(2))
    assert tasks_won([0.1, -0.2, 0.0, 0.3]) == 2 and tasks_won([0.1, 0.3], margin=0.2) == 1
    r = EvalResult(key="k", fidelity="tiny", score=0.1, tasks={
        "a": TaskResult(task="a", metric=1.0, score=0.3), "b": TaskResult(task="b", metric=1.0, score=-0.1),
        "c": TaskResult(task="c", metric=1.0, score=0.05),
        "d": TaskResult(task="d", metric=float("nan"), score=0.9, status=Status.error)})
    assert r.tasks_won == 2 and r.tasks_scored == 3 and r.tasks_won_by(0.1) == 1


def test_task_clip_bounds_every_task_before_the_mean():
    """One task where a rule wins big cannot carry the mean: scores are clipped per task."""
    cfg = dict(tasks=["quadratic", "digits_logreg"], lr_grid=LrGrid.from_range(1e-3, 1e-1, 3), seeds=[0],
               executor="inprocess")
    with RuleEvaluator(RuleEvalConfig(**cfg)) as ev:
        plain = ev.evaluate([Candidate(text=SGDW)], "tiny")[0]
    with RuleEvaluator(RuleEvalConfig(task_clip=0.2, **cfg)) as ev:
        clipped = ev.evaluate([Candidate(text=SGDW)], "tiny")[0]
    assert plain.ok and clipped.ok
    assert any(abs(t.extra["log_ratio"]) > 0.2 for t in clipped.tasks.values())   # the clip bites
    for name, t in clipped.tasks.items():
        raw = t.extra["log_ratio"]
        assert raw == pytest.approx(plain.tasks[name].score) or abs(plain.tasks[name].score) == 5.0
        assert t.score == pytest.approx(max(-0.2, min(0.2, raw)))
    assert clipped.score == pytest.approx(sum(t.score for t in clipped.tasks.values()) / 2)
    assert "log_ratio" not in next(iter(plain.tasks.values())).extra


def test_the_budget_preset_trains_less_than_todays_lr_sweep():
    """Tuning wd in the budget preset costs fewer copy-steps than today's lr-only protocol."""
    cfg = RuleEvalConfig(tasks=["digits_logreg"], executor="inprocess", **TUNING_PRESETS["budget"])
    with RuleEvaluator(cfg) as ev:
        r = ev.evaluate([Candidate(text=SGDW)], "tiny")[0]
    t = r.tasks["digits_logreg"]
    today = len(RuleEvalConfig().lr_grid.lrs()) * 2 * 60      # 9 lrs x 2 seeds x 60 tiny steps
    assert r.ok and 0 < t.extra["copy_steps"] < 0.8 * today and t.extra["baseline_copy_steps"] < 0.8 * today
    assert t.extra["best_wd"] in (0.0, 1e-2, 1e-1) and len(t.extra["per_lr"]) == 15
    assert sum(v is None for v in t.extra["per_lr"]) >= 12       # pruned points have no final metric
