"""The Ray executor on a local Ray instance started by the test (required in CI)."""
from __future__ import annotations

import os
import time

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs the 'ray' extra")

from evaluators import Candidate, LrGrid, RayExecutor, RuleEvalConfig, RuleEvaluator, Status  # noqa: E402
from evaluators import testing as T  # noqa: E402

SGD = "def sgd(w, g, lr):\n    w = w - lr * g\n    return w\n"
LION = """def lion(w, g, m, lr, wd, beta1=0.9, beta2=0.99):
    u = sign(interp(g, m, beta1))
    m = interp(g, m, beta2)
    w = w - lr * (u + wd * w)
    return w, m
"""
BROKEN = "def f(w, g, lr):\n    w = w - lr * g\n"


@pytest.fixture(scope="module")
def ray_executor():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ex = RayExecutor()
    try:
        yield ex
    finally:
        ex.close()
        ray.shutdown()


def test_failures_on_ray_are_outcomes_and_the_batch_continues(ray_executor, tmp_path):
    pidfile = tmp_path / "pid"
    items = [("square", 2.0), ("raise", "boom"), ("exit", 7), ("sleep", (120.0, str(pidfile))),
             ("square", 5.0)]
    t0 = time.monotonic()
    out = ray_executor.map(T.behave, items, timeout_s=[60, 60, 60, 2.0, 60])
    assert time.monotonic() - t0 < 100
    assert [o.status for o in out] == ["ok", "error", "error", "timeout", "ok"]
    assert out[0].value == 4.0 and out[4].value == 25.0
    assert out[1].reason == "ValueError: boom"
    assert "died" in out[2].reason
    assert "killed" in out[3].reason
    victim = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{victim}"):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{victim}"), "ray.cancel(force=True) did not kill the worker"


def test_rule_scores_on_ray_equal_in_process(ray_executor):
    cfg = dict(tasks=["quadratic", "digits_mlp"], lr_grid=LrGrid.from_range(1e-3, 1e-1, 3), seeds=[0, 1])
    cands = [Candidate(text=SGD), Candidate(text=LION), Candidate(text=BROKEN)]
    with RuleEvaluator(RuleEvalConfig(executor="ray", **cfg), executor=ray_executor) as ev:
        on_ray = ev.evaluate(cands, "tiny")
    with RuleEvaluator(RuleEvalConfig(executor="inprocess", **cfg)) as ev:
        local = ev.evaluate(cands, "tiny")
    assert [r.status for r in on_ray] == [Status.ok, Status.ok, Status.invalid]
    for a, b in zip(on_ray, local):
        assert a.model_dump(exclude={"seconds"}, mode="json") == _no_timing(b.model_dump(
            exclude={"seconds"}, mode="json"), a.model_dump(exclude={"seconds"}, mode="json"))


def _no_timing(d: dict, like: dict) -> dict:
    """``d`` with the per-task wall times taken from ``like`` (timings differ, nothing else may)."""
    for t, tr in d.get("tasks", {}).items():
        if "seconds" in tr.get("extra", {}):
            tr["extra"]["seconds"] = like["tasks"][t]["extra"]["seconds"]
    return d
