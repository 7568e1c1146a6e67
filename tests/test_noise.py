"""evaluators.noise: AdamW-vs-AdamW noise floors (real sweeps at tiny fidelity, real SQLite cache)."""
import math
import time

import numpy as np
import pytest

from evaluators import NoiseFloor, RuleEvalConfig, RuleEvaluator, noise_floors
from evaluators.noise import NOISE_SEED_BASE, floor_from_sweep, tuned_metrics
from evaluators.sweeps import SweepSummary


def _summary(final, hib=False):
    return SweepSummary(task="t", lrs=[0.1 * (i + 1) for i in range(len(final))],
                        seeds=list(range(len(final[0]))), final=final,
                        diverged=[[v is None for v in row] for row in final], best=0, higher_is_better=hib)


def test_each_seed_set_is_tuned_on_its_own():
    # point 0 is best for seeds 0,1; point 1 for seeds 2,3; point 2 never finished seed 0
    s = _summary([[1.0, 1.0, 5.0, 5.0], [2.0, 2.0, 1.0, 1.0], [None, 0.1, 0.1, 0.1]])
    assert list(tuned_metrics(s, [0, 1])) == [1.0, 1.0]
    assert list(tuned_metrics(s, [2, 3])) == [0.1, 0.1]
    assert tuned_metrics(_summary([[None, 1.0]]), [0]) is None
    assert list(tuned_metrics(_summary([[0.5, 0.5], [0.9, 0.9]], hib=True), [0, 1])) == [0.9, 0.9]


def test_floor_is_twice_the_rms_null_score():
    # 2 replicates of 1 seed per side: z_0 = log(2/1), z_1 = log(1/1) = 0 (losses: log(b / a))
    s = _summary([[1.0, 2.0, 3.0, 3.0]])
    f = floor_from_sweep(s, "tiny", n_seeds=1, replicates=2, clip=5.0)
    assert f.replicates == pytest.approx([math.log(2.0), 0.0])
    assert f.floor == pytest.approx(2 * math.sqrt(math.log(2.0) ** 2 / 2))
    assert f.noisy and NoiseFloor.from_json(f.to_json()) == f
    clipped = floor_from_sweep(s, "tiny", n_seeds=1, replicates=2, clip=0.1)
    assert clipped.replicates[0] == pytest.approx(0.1)


def test_noise_floors_are_measured_and_cached(tmp_path):
    cfg = RuleEvalConfig(tasks=["quadratic", "digits_logreg"], seeds=[2, 3], executor="inprocess",
                         lr_grid={"points": 5}, wd_grid={"values": [0.0, 0.01, 0.1]},
                         halving={"rungs": [(0.3, 3)]}, task_clip=0.5, cache_dir=str(tmp_path / "c.sqlite"))
    with RuleEvaluator(cfg) as ev:
        floors = noise_floors(ev, "tiny", replicates=3)
    assert list(floors) == ["quadratic", "digits_logreg"]
    for f in floors.values():
        assert f.n_seeds == 2 and len(f.replicates) == 3 and f.floor > 0
        assert all(abs(z) <= 0.5 for z in f.replicates)
        assert f.floor == pytest.approx(2 * np.sqrt(np.mean(np.square(f.replicates))))
    # a second evaluator on the same cache file: read back, no training
    with RuleEvaluator(cfg) as ev2:
        t0 = time.perf_counter()
        again = noise_floors(ev2, "tiny", replicates=3)
        assert time.perf_counter() - t0 < 1.0 and ev2.trained == 0
    assert {k: v.to_json() for k, v in again.items()} == {k: v.to_json() for k, v in floors.items()}
    assert NOISE_SEED_BASE > max(cfg.seeds)


def test_cli_noise_json_then_cached(tmp_path, capsys):
    from search.cli import main
    argv = ["noise", "--tasks", "quadratic", "--fidelity", "tiny", "--executor", "inprocess", "--seeds", "2",
            "--replicates", "2", "--cache", str(tmp_path / "n.sqlite"), "--json"]
    assert main(argv) == 0
    d = __import__("json").loads(capsys.readouterr().out)
    f = d["tasks"]["quadratic"]
    assert d["n_seeds"] == 2 and len(f["replicates"]) == 2 and f["noisy"] == (f["floor"] > d["noisy_above"])
    t0 = time.perf_counter()
    assert main(argv[:-1]) == 0                          # cached: no training, the table
    assert time.perf_counter() - t0 < 2.0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("quadratic") and f"{f['floor']:.3f}" in out
    assert main(["noise", "--tasks", "", "--fidelity", "tiny"]) == 1
    assert "--tasks" in capsys.readouterr().err
