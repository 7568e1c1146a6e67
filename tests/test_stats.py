"""evaluators.stats: paired log ratios, the hierarchical bootstrap, verdicts and their wording."""
import math

import numpy as np
import pytest

from evaluators import (
    VERDICTS,
    Estimate,
    StatsError,
    TaskResult,
    describe,
    estimate,
    estimate_results,
    per_seed_log_ratios,
)


def _tr(c, b, higher=False, task="t"):
    return TaskResult(task=task, metric=float(np.mean(c)), higher_is_better=higher,
                      extra={"seed_metrics": list(c), "baseline_seed_metrics": list(b)})


def test_per_seed_log_ratios_losses_and_accuracies():
    r = per_seed_log_ratios(_tr([1.0, 2.0], [2.0, 2.0]))
    assert np.allclose(r, [math.log(2.0), 0.0])
    r = per_seed_log_ratios(_tr([0.9, 0.5], [0.45, 0.5], higher=True))
    assert np.allclose(r, [math.log(2.0), 0.0])


def test_per_seed_log_ratios_diverged_and_clip():
    r = per_seed_log_ratios(_tr([float("nan"), 1.0, float("inf")], [1.0, float("nan"), float("inf")]))
    assert r[0] == -np.inf and r[1] == np.inf and r[2] == 0.0
    r = per_seed_log_ratios(_tr([float("nan"), 1e-3], [1.0, 1.0]), clip=0.5)
    assert list(r) == [-0.5, 0.5]


def test_per_seed_log_ratios_rejects_unpaired():
    with pytest.raises(StatsError, match="paired"):
        per_seed_log_ratios(_tr([1.0, 2.0], [1.0]))
    with pytest.raises(StatsError, match="per-seed"):
        per_seed_log_ratios(TaskResult(task="t", metric=1.0))


def test_clear_gain_holds():
    rng = np.random.default_rng(1)
    per = {f"t{i}": 0.2 + 0.02 * rng.standard_normal(4) for i in range(4)}
    e = estimate(per, {k: 0.05 for k in per})
    assert e.verdict == "holds"
    assert 0 < e.ci[0] < e.score < e.ci[1]
    assert e.p_improvement == 1.0
    assert e.n_tasks == 4 and e.n_seeds == 4
    assert all(t.beyond_noise and t.noise == 0.05 for t in e.tasks.values())
    assert e.score == pytest.approx(np.mean([np.mean(v) for v in per.values()]))


def test_noise_floor_blocks_holds():
    """A consistent but tiny gain (below every task's noise floor) does not hold."""
    per = {f"t{i}": [0.010, 0.011, 0.012, 0.013] for i in range(4)}
    assert estimate(per).verdict == "holds"  # no floors: each task's own interval excludes 0
    e = estimate(per, {k: 0.05 for k in per})
    assert e.ci[0] > 0 and e.verdict == "indistinguishable"
    assert not any(t.beyond_noise for t in e.tasks.values())


def test_one_big_win_does_not_hold():
    """Mean > 0 carried by one task: at most half the tasks are won, so no 'holds'."""
    per = {"a": [0.8, 0.9, 0.85], "b": [0.0, 0.01, -0.01], "c": [0.01, -0.02, 0.0], "d": [0.0, 0.0, 0.01]}
    e = estimate(per, {k: 0.02 for k in per})
    assert e.score > 0 and e.verdict != "holds"


def test_worse_and_null():
    rng = np.random.default_rng(2)
    worse = estimate({f"t{i}": -0.3 + 0.05 * rng.standard_normal(5) for i in range(3)})
    assert worse.verdict == "worse" and worse.ci[1] < 0 and worse.p_improvement == 0.0
    null = estimate({f"t{i}": 0.05 * rng.standard_normal(5) for i in range(6)}, seed=3)
    assert null.verdict == "indistinguishable" and null.ci[0] < 0 < null.ci[1]
    zero = estimate({"a": [0.0, 0.0]})
    assert zero.verdict == "indistinguishable" and zero.ci == (0.0, 0.0) and zero.p_improvement == 0.0


def test_interval_widens_with_fewer_seeds_and_is_deterministic():
    rng = np.random.default_rng(4)
    many = {f"t{i}": 0.1 + 0.1 * rng.standard_normal(16) for i in range(4)}
    few = {k: v[:3] for k, v in many.items()}
    w = lambda e: e.ci[1] - e.ci[0]  # noqa: E731
    assert w(estimate(few)) > w(estimate(many))
    assert estimate(many, seed=7).to_json() == estimate(many, seed=7).to_json()


def test_task_resampling_catches_task_disagreement():
    """Tasks that disagree strongly give a wide interval even with tight seeds."""
    per = {"a": [0.5] * 8, "b": [-0.4] * 8, "c": [0.45] * 8, "d": [-0.45] * 8}
    e = estimate(per)
    assert e.ci[0] < 0 < e.ci[1] and e.verdict == "indistinguishable"
    assert all(t.ci[0] == t.ci[1] for t in e.tasks.values())  # no seed spread inside a task


def test_aggregates():
    per = {"a": [1.0], "b": [0.1], "c": [0.2], "d": [0.0]}
    assert estimate(per, aggregate="mean").score == pytest.approx(0.325)
    assert estimate(per, aggregate="median").score == pytest.approx(0.15)
    assert estimate(per, aggregate="iqm").score == pytest.approx(0.15)  # middle two of four
    with pytest.raises(StatsError, match="aggregate"):
        estimate(per, aggregate="max")


def test_bad_input_errors():
    with pytest.raises(StatsError, match="no tasks"):
        estimate({})
    with pytest.raises(StatsError, match="no seeds"):
        estimate({"a": []})
    with pytest.raises(StatsError, match="clip"):
        estimate({"a": [0.1, -np.inf]})
    with pytest.raises(StatsError, match="level"):
        estimate({"a": [0.1]}, level=1.5)


def test_to_json_shape_and_roundtrip():
    e = estimate({"a": [0.1, 0.2], "b": [0.3, 0.1]}, {"a": 0.05})
    j = e.to_json()
    assert set(j) == {"score", "ci", "p_improvement", "verdict", "aggregate", "level", "n_tasks", "n_seeds",
                      "tasks"}
    assert set(j["tasks"]["a"]) == {"score", "ci", "noise", "n_seeds", "beyond_noise"}
    assert isinstance(j["ci"], list) and len(j["ci"]) == 2
    assert j["tasks"]["b"]["noise"] is None and j["tasks"]["a"]["noise"] == 0.05
    assert j["verdict"] in VERDICTS
    assert Estimate.from_json(j).to_json() == j


def test_describe_wording():
    per = {f"t{i}": [0.12, 0.13, 0.11, 0.12] for i in range(4)}
    s = describe(estimate(per, {k: 0.02 for k in per}))
    assert s.startswith("holds: +0.120 [")
    assert s.endswith("vs tuned AdamW (95% CI, mean over 4 tasks x 4 seeds, P(better) 1.00)")
    s = describe(estimate({"a": [0.1, -0.1, 0.05]}))
    assert s.startswith("indistinguishable from tuned AdamW: +0.017 [") and "1 task x 3 seeds" in s
    s = describe(estimate({"a": [-0.5, -0.4], "b": [-0.3, -0.6]}), baseline="SGD")
    assert s.startswith("worse than SGD: -0.450 [")


def test_estimate_results_uses_clip():
    res = {"a": _tr([float("nan"), 0.5], [1.0, 1.0], task="a")}
    e = estimate_results(res, clip=1.0)
    assert e.tasks["a"].score == pytest.approx((-1.0 + math.log(2.0)) / 2)


def test_a_consistent_negligible_difference_is_neither_worse_nor_holds():
    """A rule equal to AdamW up to rounding: the interval excludes 0, the effect is far below noise."""
    tiny = {f"t{i}": [-1e-7, -2e-7, -1.5e-7, -1.2e-7] for i in range(4)}
    e = estimate(tiny, {k: 0.05 for k in tiny})
    assert e.ci[1] < 0 and e.verdict == "indistinguishable"
    assert estimate({k: [-x for x in v] for k, v in tiny.items()}, {k: 0.05 for k in tiny}).verdict == (
        "indistinguishable")
    big = {f"t{i}": [-0.3, -0.25, -0.35, -0.3] for i in range(4)}
    assert estimate(big, {k: 0.05 for k in big}).verdict == "worse"


def test_describe_says_why_an_interval_off_zero_is_not_a_verdict():
    # every seed lost by the clip, but one of the two tasks is noisier than the clip itself
    e = estimate({"noisy": [-0.5] * 4, "quiet": [-0.5] * 4}, {"noisy": 0.6, "quiet": 0.2})
    assert e.verdict == "indistinguishable" and e.ci[1] < 0
    assert describe(e).endswith("; its interval is below 0, but most tasks are within their noise floor")
    plain = describe(estimate({"a": [0.1, -0.1, 0.05]}, {"a": 0.3}))
    assert "noise floor" not in plain   # the interval contains 0: nothing to explain
