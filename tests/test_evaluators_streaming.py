"""Results stream as they finish: ``Executor.map(on_done=...)`` and ``Evaluator.evaluate(on_result=...)``.

Real workers and real failures (a worker past its time limit is killed, one calls ``os._exit``),
real training on the quadratic proxy task. What is checked: every item / candidate is reported
exactly once, in the calling thread, as soon as it is done (not when the batch is), with the same
outcome / result that the call returns, and a trained result is in the cache when it is reported.
"""
from __future__ import annotations

import threading
import time

import pytest

import dsl
from evaluators import PromptEvaluator
from evaluators import testing as T
from evaluators.base import Candidate, EvalResult, Status, accepts_on_result
from evaluators.executors import InProcessExecutor, ProcessPoolExecutor
from evaluators.rules import LrGrid, RuleEvalConfig, RuleEvaluator
from proxies.prompts import get_prompt_task
from search.llm import ScriptedLLM

SGD = "def sgd(w, g, lr):\n    w = w - lr * g\n    return w\n"
SGD_RENAMED = "def plain(w, g, lr):\n    step_size = lr * 1\n    w = w - step_size * g\n    return w\n"
NOT_DSL = "def sneaky(w, g, lr):\n    import os\n    return w\n"
# valid, and far too slow on digits_mlp for a 5 s limit (300 Newton-Schulz orthogonalizations per step)
SLOW = ("def slow(w, g, lr):\n    u = g\n"
        + "    u = orthogonalize(orthogonalize(orthogonalize(orthogonalize(orthogonalize(u + g)))))\n" * 60
        + "    w = w - lr * u\n    return w\n")


class Recorder:
    """Collects (index, payload, time, thread) of each callback."""

    def __init__(self):
        self.calls: list[tuple[int, object, float, int]] = []

    def __call__(self, i, payload):
        self.calls.append((i, payload, time.monotonic(), threading.get_ident()))

    @property
    def order(self) -> list[int]:
        return [c[0] for c in self.calls]


# ----------------------------------------------------------------------------- executors

def test_in_process_reports_each_item_right_after_it_runs():
    rec = Recorder()
    items = [("square", 3.0), ("raise", "boom"), ("sleep", (0.3, None)), ("square", 4.0)]
    t0 = time.monotonic()
    out = InProcessExecutor().map(T.behave, items, on_done=rec)
    assert rec.order == [0, 1, 2, 3]
    assert [c[1] for c in rec.calls] == out and all(a is b for a, (_, b, _, _) in zip(out, rec.calls))
    assert [o.status for o in out] == ["ok", "error", "ok", "ok"]
    assert {c[3] for c in rec.calls} == {threading.get_ident()}
    # item 0 was reported before item 2 had slept its 0.3 s
    assert rec.calls[0][2] - t0 < rec.calls[2][2] - t0 - 0.25


def test_pool_reports_as_items_finish_timeouts_and_crashes_included():
    rec = Recorder()
    items = [("sleep", (30.0, None)), ("square", 2.0), ("exit", 5), ("square", 3.0), ("sigkill", None),
             ("unpicklable", None), ("square", 4.0)]
    with ProcessPoolExecutor(workers=2) as pool:
        t0 = time.monotonic()
        out = pool.map(T.behave, items, timeout_s=3.0, on_done=rec)
        t_end = time.monotonic()
        # an item that cannot even be sent is reported too (before anything runs)
        rec2 = Recorder()
        out2 = pool.map(T.square, [lambda: 1, 5.0], on_done=rec2)
    assert [o.status for o in out] == ["timeout", "ok", "error", "ok", "error", "error", "ok"]
    assert sorted(rec.order) == list(range(len(items))), "each item exactly once"
    by_index = {i: o for i, o, _, _ in rec.calls}
    assert all(by_index[i] is out[i] for i in range(len(items)))
    assert {c[3] for c in rec.calls} == {threading.get_ident()}
    # the stuck item ends the batch: everything else was reported well before it, as it finished
    assert rec.order[-1] == 0 and "killed" in rec.calls[-1][1].reason
    first_ok = next(t for i, o, t, _ in rec.calls if o.ok)
    assert first_ok - t0 < 2.0 and t_end - first_ok > 1.0
    assert "exited with code 5" in by_index[2].reason and "SIGKILL" in by_index[4].reason
    assert rec2.order[0] == 0 and "could not send" in out2[0].reason and out2[1].value == 25.0


def test_a_failing_callback_stops_the_batch_and_the_pool_still_works():
    def bad(i, o):
        raise RuntimeError("callback broke")

    with ProcessPoolExecutor(workers=1) as pool:
        with pytest.raises(RuntimeError, match="callback broke"):
            pool.map(T.square, [1.0, 2.0], on_done=bad)
        assert [o.value for o in pool.map(T.square, [3.0])] == [9.0]


# ----------------------------------------------------------------------------- the rule evaluator

def _cfg(**kw) -> RuleEvalConfig:
    base = dict(tasks=["quadratic"], lr_grid=LrGrid(values=[0.01, 0.1]), seeds=[0], executor="inprocess")
    base.update(kw)
    return RuleEvalConfig(**base)


def _same(a: EvalResult, b: EvalResult) -> bool:
    skip = {"seconds": True, "tasks": {"__all__": {"extra": {"seconds"}}}}
    return a.model_dump(exclude=skip, mode="json") == b.model_dump(exclude=skip, mode="json")


def test_rule_evaluator_reports_each_candidate_when_final_and_returns_the_same_list():
    adamw = dsl.get_rule("adamw").source()
    cands = [Candidate(text=SGD), Candidate(text=NOT_DSL), Candidate(text=SGD_RENAMED),
             Candidate(text=adamw), Candidate(kind="prompt", text="hi")]
    with RuleEvaluator(_cfg()) as plain:
        want = plain.evaluate(cands, "tiny")
    with RuleEvaluator(_cfg()) as ev:
        assert accepts_on_result(ev)
        seen_in_cache = {}

        def on_result(i, r):
            if r.status == Status.ok:
                seen_in_cache[i] = ev.cache.get(r.key, "tiny", ev.config_hash) is not None

        rec = Recorder()
        got = ev.evaluate(cands, "tiny", on_result=lambda i, r: (rec(i, r), on_result(i, r)))
        assert ev.trained == 2
        # invalid ones at once, then each trained candidate with its twin (same fingerprint)
        assert rec.order == [1, 4, 0, 2, 3]
        assert all(rec.calls[k][1] is got[i] for k, i in enumerate(rec.order))
        assert seen_in_cache == {0: True, 2: True, 3: True}, "reported before it was cached"
        assert got[2].cached and not got[0].cached and got[2].score == got[0].score
        # the list is what it was without the callback
        assert [r.status for r in got] == [r.status for r in want]
        assert all(_same(a, b) for a, b in zip(got, want))
        # a cache hit is reported at once
        rec2 = Recorder()
        again = ev.evaluate([Candidate(text=SGD)], "tiny", on_result=rec2)
        assert again[0].cached and rec2.order == [0] and ev.trained == 2


def test_a_failing_on_result_does_not_fail_the_evaluations():
    with RuleEvaluator(_cfg()) as ev:
        def bad(i, r):
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            ev.evaluate([Candidate(text=SGD), Candidate(text=dsl.get_rule("adamw").source())], "tiny",
                        on_result=bad)
        # both were trained and cached all the same: nothing was lost or marked failed
        hits = ev.evaluate([Candidate(text=SGD), Candidate(text=dsl.get_rule("adamw").source())], "tiny")
        assert all(r.cached and r.status == Status.ok for r in hits) and ev.trained == 2


def test_pool_reports_the_fast_rule_long_before_the_slow_one_is_killed():
    rec = Recorder()
    with ProcessPoolExecutor(workers=2) as pool:
        with RuleEvaluator(_cfg(executor="pool", timeout_s=5.0, tasks=["digits_mlp"]), executor=pool) as ev:
            ev.baselines("tiny")       # so the batch holds only the two candidates
            t0 = time.monotonic()
            out = ev.evaluate([Candidate(text=SLOW), Candidate(text=SGD)], "tiny", on_result=rec)
            t_end = time.monotonic()
    assert rec.order == [1, 0]
    assert out[0].status == Status.timeout and out[1].status == Status.ok
    assert rec.calls[0][2] - t0 < t_end - t0 - 1.0, "the fast rule waited for the batch"


# ----------------------------------------------------------------------------- the prompt evaluator

def test_prompt_evaluator_reports_cache_hits_and_invalid_prompts_before_the_model_call():
    calls = []

    def model(req):
        calls.append(time.monotonic())
        return "42"

    task = get_prompt_task("sum", sizes={"train": 5, "dev": 6, "test": 6})
    ev = PromptEvaluator(task, ScriptedLLM(model))
    first = ev.evaluate([Candidate(kind="prompt", text="Add them.")], "dev")      # caches it and the baseline
    rec = Recorder()
    out = ev.evaluate([Candidate(kind="prompt", text="New words."), Candidate(kind="prompt", text="  "),
                       Candidate(kind="prompt", text="Add   them.")], "dev", on_result=rec)
    assert sorted(rec.order) == [0, 1, 2] and rec.order[-1] == 0
    early = [t for i, _, t, _ in rec.calls if i in (1, 2)]
    assert max(early) < min(calls[-6:]), "the hit and the invalid prompt waited for the model"
    assert out[2].cached and out[2].score == first[0].score
    assert out[2].tasks["sum"].baseline is not None and out[1].status == Status.invalid
    assert all(rec.calls[k][1] is out[i] for k, i in enumerate(rec.order))
