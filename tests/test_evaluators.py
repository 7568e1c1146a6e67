"""RuleEvaluator on the real proxy tasks (tiny fidelity): scoring, failures, caching, executors."""
from __future__ import annotations

import json
import math
import os
import threading
import time

import numpy as np
import pytest
from pydantic import ValidationError

import dsl
from evaluators import (
    WORST_SCORE,
    Candidate,
    EvalCache,
    EvalResult,
    LrGrid,
    ProcessPoolExecutor,
    RuleEvalConfig,
    RuleEvaluator,
    Status,
)
from evaluators.rules import SweepJob, run_sweep_job
from search.cli import main

TASKS = ["quadratic", "digits_mlp"]
GRID = LrGrid.from_range(1e-3, 1e-1, 4)

SGD = """
def sgd(w, g, lr):
    w = w - lr * g
    return w
"""
# the same function: other names, a comment, an exact identity (x * 1)
SGD_RENAMED = """
def plain_descent(w, g, lr):
    # renamed, and written differently
    step_size = lr * 1
    w = w - step_size * g
    return w
"""
DIVERGES = """
def explode(w, g, lr):
    w = w + 1e6 * lr * (sign(g) + w)
    return w
"""
NOT_DSL = """
def sneaky(w, g, lr):
    import os
    return w
"""
# 300 Newton-Schulz orthogonalizations per step: valid, and far too slow for the limits below
# (about 20 s for both tasks at tiny on a 2-core container, vs about 1 s for SGD).
SLOW = ("def slow(w, g, lr):\n    u = g\n"
        + "    u = orthogonalize(orthogonalize(orthogonalize(orthogonalize(orthogonalize(u + g)))))\n" * 60
        + "    w = w - lr * u\n    return w\n")


def cfg(**kw) -> RuleEvalConfig:
    base = dict(tasks=TASKS, lr_grid=GRID, seeds=[0, 1], executor="inprocess")
    base.update(kw)
    return RuleEvalConfig(**base)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("evalcache")


@pytest.fixture(scope="module")
def ev(cache_dir):
    with RuleEvaluator(cfg(cache_dir=str(cache_dir))) as e:
        yield e


@pytest.fixture(scope="module")
def batch(ev):
    cands = [Candidate(text=SGD), Candidate(text=NOT_DSL), Candidate(text=DIVERGES),
             Candidate(text=dsl.get_rule("adamw").source()), Candidate(text=SGD_RENAMED)]
    trained0 = ev.trained
    res = ev.evaluate(cands, "tiny")
    return res, ev.trained - trained0


def test_good_rule_is_scored_against_tuned_adamw(batch):
    res, _ = batch
    sgd = res[0]
    assert sgd.status == Status.ok and sgd.reason == "" and not sgd.cached
    assert set(sgd.tasks) == set(TASKS)
    for t in TASKS:
        tr = sgd.tasks[t]
        assert tr.status == Status.ok
        assert tr.best_lr in tr.extra["lrs"] and tr.extra["lrs"] == pytest.approx(GRID.lrs())
        c, b = np.array(tr.extra["seed_metrics"]), np.array(tr.extra["baseline_seed_metrics"])
        assert tr.metric == pytest.approx(c.mean()) and tr.baseline == pytest.approx(b.mean())
        assert tr.score == pytest.approx(np.clip(np.mean(np.log(b / c)), -5, 5))
        # the tuned lr is the best seed-mean over the usable lrs
        per_lr = tr.extra["per_lr"]
        assert tr.metric == pytest.approx(min(v for v in per_lr if v is not None))
        assert len(tr.curve) == len(tr.extra["curve_steps"]) >= 2 and tr.extra["baseline_curve"]
    assert sgd.score == pytest.approx(np.mean([sgd.tasks[t].score for t in TASKS]))
    assert sgd.seconds > 0


def test_adamw_scores_exactly_zero_against_itself(batch):
    adamw = batch[0][3]
    assert adamw.status == Status.ok and adamw.score == 0.0
    for tr in adamw.tasks.values():
        assert tr.metric == tr.baseline and tr.best_lr == tr.extra["baseline_lr"]


def test_unparseable_source_is_invalid_with_the_dsl_message(batch):
    bad = batch[0][1]
    assert bad.status == Status.invalid and bad.score == WORST_SCORE
    assert "line 3" in bad.reason and "import" in bad.reason.lower()


def test_diverging_rule_gets_worst_score_and_the_reason(batch):
    div = batch[0][2]
    assert div.status == Status.diverged and div.score == WORST_SCORE
    assert "diverged at all 4 learning rates" in div.reason and "quadratic" in div.reason
    # the remaining tasks were skipped: its score is the worst anyway
    assert list(div.tasks) == ["quadratic"] and div.tasks["quadratic"].extra["n_diverged"] == 8


def test_renamed_identical_program_is_never_trained_twice(ev, batch):
    res, trained = batch
    assert res[4].cached and res[4].score == res[0].score and res[4].key == res[0].key
    assert trained == 3  # sgd, the diverging rule, adamw: the renamed sgd was not trained
    before = ev.trained
    again = ev.evaluate([Candidate(text=SGD_RENAMED)], "tiny")[0]
    assert again.cached and again.score == res[0].score and ev.trained == before


def test_persistent_cache_survives_a_new_evaluator(cache_dir, batch):
    res, _ = batch
    with RuleEvaluator(cfg(cache_dir=str(cache_dir))) as fresh:
        again = fresh.evaluate([Candidate(text=SGD_RENAMED), Candidate(text=DIVERGES)], "tiny")
        assert fresh.trained == 0
    assert again[0].cached and again[0].score == res[0].score
    assert again[1].cached and again[1].status == Status.diverged and again[1].reason == res[2].reason


def test_a_changed_protocol_is_a_cache_miss(cache_dir):
    with RuleEvaluator(cfg(cache_dir=str(cache_dir), seeds=[0])) as other:
        r = other.evaluate([Candidate(text=SGD)], "tiny")[0]
        assert not r.cached and other.trained == 1
    assert len(r.tasks["quadratic"].extra["seed_metrics"]) == 1


def test_a_baseline_sweep_is_shared_by_evaluators_whose_task_lists_overlap(cache_dir, batch):
    full = cfg(cache_dir=str(cache_dir))
    assert len(full.tasks) > 1
    with RuleEvaluator(full) as a, RuleEvaluator(cfg(cache_dir=str(cache_dir), tasks=full.tasks[:1])) as b:
        t = full.tasks[0]
        assert a._cached_baseline(t, "tiny") is not None          # the batch above swept it
        assert b._baseline_id(t, "tiny") == a._baseline_id(t, "tiny")
        assert b._cached_baseline(t, "tiny") == a._cached_baseline(t, "tiny")
    with RuleEvaluator(cfg(cache_dir=str(cache_dir), tasks=full.tasks[:1], seeds=[0])) as c:
        assert c._baseline_id(t, "tiny") != a._baseline_id(t, "tiny")   # a changed protocol is not shared


def test_grid_edge_is_reported(ev):
    with RuleEvaluator(cfg(lr_grid=LrGrid(values=[1e-5, 3e-5, 1e-4]), tasks=["quadratic"])) as small:
        r = small.evaluate([Candidate(text=SGD)], "tiny")[0]
    tr = r.tasks["quadratic"]
    assert tr.best_lr == 1e-4 and tr.extra["lr_at_edge"] == "high"
    assert any("high edge" in w and "widen" in w for w in tr.extra["warnings"])


def test_sweep_that_raises_is_reported_per_task():
    job = SweepJob(SGD, ("quadratic",), (1e-2,), (0,), "gigantic")
    (s,) = run_sweep_job(job)
    assert s.failed and s.error.startswith("ValueError") and "gigantic" in s.error


def test_bad_config_and_fidelity_say_what_to_do(ev):
    with pytest.raises(ValidationError, match="known tasks"):
        RuleEvalConfig(tasks=["imagenet"])
    with pytest.raises(ValidationError, match="extra"):
        RuleEvalConfig(tasks=TASKS, lr=0.1)
    with pytest.raises(ValueError, match="tiny, small, full"):
        ev.evaluate([Candidate(text=SGD)], "huge")
    assert LrGrid().lrs() == pytest.approx(list(np.logspace(-4, 0, 9)))
    r = ev.evaluate([Candidate(kind="prompt", text="Be concise.")], "tiny")[0]
    assert r.status == Status.invalid and "prompt" in r.reason


def test_pool_gives_identical_results_and_kills_a_slow_rule(batch):
    """Same scores in a process pool as in process; a rule past its limit is killed, the batch goes on."""
    res, _ = batch
    with ProcessPoolExecutor(workers=2) as pool:
        with RuleEvaluator(cfg(executor="pool", timeout_s=10.0), executor=pool) as ev_pool:
            t0 = time.monotonic()
            out = ev_pool.evaluate([Candidate(text=SLOW), Candidate(text=SGD), Candidate(text=NOT_DSL),
                                    Candidate(text=dsl.get_rule("adamw").source())], "tiny")
            assert time.monotonic() - t0 < 60
            assert pool.killed, "no worker was killed"
    slow, sgd, bad, adamw = out
    assert slow.status == Status.timeout and slow.score == WORST_SCORE
    assert "10s time limit" in slow.reason and "killed" in slow.reason
    assert bad.status == Status.invalid
    assert sgd.status == Status.ok and not sgd.cached
    assert sgd.model_dump(exclude={"seconds", "cached"}, mode="json")["tasks"].keys() == res[0].tasks.keys()
    for t in TASKS:
        a, b = sgd.tasks[t], res[0].tasks[t]
        assert (a.metric, a.baseline, a.score, a.best_lr, a.curve) == (b.metric, b.baseline, b.score,
                                                                    b.best_lr, b.curve)
    assert sgd.score == res[0].score and adamw.score == 0.0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc to watch the worker")
def test_worker_killed_from_outside_is_an_error_and_the_next_batch_works():
    """As when the OOM killer takes a worker: status error with a clear reason, the pool recovers."""
    with ProcessPoolExecutor(workers=1) as pool:
        with RuleEvaluator(cfg(executor="pool", tasks=["digits_mlp"]), executor=pool) as ev_pool:
            ev_pool.baselines("tiny")  # so the only work left is the slow rule's
            victim = pool.pids[0]
            start = _cpu_seconds(victim)

            def killer():
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        if _cpu_seconds(victim) - start > 0.3:
                            os.kill(victim, 9)
                            return
                    except FileNotFoundError:
                        return
                    time.sleep(0.02)

            th = threading.Thread(target=killer)
            th.start()
            r = ev_pool.evaluate([Candidate(text=SLOW)], "tiny")[0]
            th.join()
            assert r.status == Status.error and r.score == WORST_SCORE
            assert "SIGKILL" in r.reason and "digits_mlp" in r.reason
            ok = ev_pool.evaluate([Candidate(text=SGD)], "tiny")[0]
            assert ok.status == Status.ok and math.isfinite(ok.score)
            assert victim not in pool.pids


def test_cache_round_trips_failed_results_with_nan(tmp_path, batch):
    res, _ = batch
    c = EvalCache(tmp_path / "c.sqlite")
    c.put_many([res[0], res[2]], "cfg")
    c.close()
    c2 = EvalCache(tmp_path / "c.sqlite")
    a, d = c2.get(res[0].key, "tiny", "cfg"), c2.get(res[2].key, "tiny", "cfg")
    assert a.cached and a.model_dump(exclude={"cached"}) == res[0].model_dump(exclude={"cached"})
    assert d.status == Status.diverged and math.isnan(d.tasks["quadratic"].metric)
    assert c2.get(res[0].key, "small", "cfg") is None and len(c2) == 2


def test_cli_eval_prints_the_table_and_plots(tmp_path, capsys):
    rule = tmp_path / "my_sgd.rule"
    rule.write_text(SGD)
    png = tmp_path / "curves.png"
    rc = main(["eval", str(rule), "--tasks", "quadratic", "--fidelity", "tiny", "--lrs", "1e-3:1e-1:3",
               "--seeds", "0", "--executor", "inprocess", "--plot", str(png), "--noise-replicates", "0"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "quadratic" in out and "tuned lr" in out and "adamw" in out and "overall score" in out
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"

    rc = main(["eval", "lion", "--tasks", "quadratic", "--fidelity", "tiny", "--lrs", "1e-3,1e-2",
               "--seeds", "0", "--executor", "inprocess", "--json", "--noise-replicates", "0"])
    res = EvalResult.model_validate(json.loads(capsys.readouterr().out)["result"])
    assert rc == 0 and res.ok and res.tasks["quadratic"].best_lr in (1e-3, 1e-2)

    rule.write_text(NOT_DSL)
    assert main(["eval", str(rule), "--tasks", "quadratic", "--fidelity", "tiny",
                 "--executor", "inprocess"]) == 1
    captured = capsys.readouterr()  # refused before any training, with the DSL's line/column message
    assert "my_sgd.rule: line " in captured.err and "scoring" not in captured.err
    assert main(["eval", str(tmp_path / "missing.rule")]) == 1
    assert "not a library or discovered rule" in capsys.readouterr().err
    assert main(["eval", "lion", "--lrs", "0.1:1e-3:x"]) == 1
    assert "LO:HI:N" in capsys.readouterr().err


def test_a_baseline_that_diverges_everywhere_is_an_error_that_names_the_grid():
    ignores_lr = "def tiny_steps(w, g, lr):\n    w = w - 0.001 * tanh(g)\n    return w\n"
    with RuleEvaluator(cfg(tasks=["quadratic"], lr_grid=LrGrid(values=[1e3, 1e4]))) as bad_grid:
        r = bad_grid.evaluate([Candidate(text=ignores_lr)], "tiny")[0]
        assert r.status == Status.error and r.score == WORST_SCORE
        assert "adamw baseline failed on task quadratic" in r.reason and "grid is wrong" in r.reason
        trained = bad_grid.trained
        again = bad_grid.evaluate([Candidate(text=ignores_lr.replace("0.001", "0.002"))], "tiny")[0]
        assert again.status == Status.error and bad_grid.trained == trained + 1
