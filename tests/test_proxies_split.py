"""Held-out test splits: disjoint and deterministic data, a metric of its own, kept apart from val
everywhere a search could see it (evaluator cache, campaigns), and reachable from `optforge eval`."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import dsl
from evaluators import Candidate, EvalCache, LrGrid, RuleEvalConfig, RuleEvaluator, Status
from proxies import SPLITS, get_task, list_tasks
from proxies.tasks import char_lm, digits, modular
from search.cli import main
from search.core import CampaignError, load_campaign

ADAMW = dsl.get_rule("adamw").source()
SGDM = dsl.get_rule("sgd_momentum").source()


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x}


def test_digits_splits_are_disjoint_sized_and_keep_the_old_validation_set():
    d = digits.digits_data()
    assert len(d["y_train"]) == 1077 and len(d["y_val"]) == 360 and len(d["y_test"]) == 360
    # the 1797 images, each in exactly one split (sklearn digits has a few duplicate images, so compare
    # by position in the seeded permutation rather than by pixel content)
    raw = load_digits()
    x = torch.from_numpy((raw.data / 16.0).astype(np.float32))
    perm = np.random.RandomState(0).permutation(len(x))
    assert torch.equal(d["x_val"], x[perm[:360]])            # validation unchanged by the test split
    assert torch.equal(d["x_test"], x[perm[360:720]])
    assert torch.equal(d["x_train"], x[perm[720:]])
    assert len(set(perm[:360]) | set(perm[360:720]) | set(perm[720:])) == 1797
    # no test image appears in training, not even as a pixel-identical copy
    overlap = _rows(d["x_test"]) & _rows(d["x_train"])
    assert not overlap, f"{len(overlap)} test images also in training"


def test_digits_split_is_deterministic_across_rebuilds(monkeypatch):
    before = {k: v.clone() for k, v in digits.digits_data().items()}
    monkeypatch.setattr(digits, "_DATA", {})
    again = digits.digits_data()
    assert all(torch.equal(before[k], again[k]) for k in before)


def test_modular_pairs_split_into_disjoint_train_val_test(monkeypatch):
    monkeypatch.setattr(modular, "_DATA", {})
    d = modular.modular_data(31, 0.6)
    pairs = {s: set(zip(d[f"a_{s}"].tolist(), d[f"b_{s}"].tolist())) for s in ("train", "val", "test")}
    assert [len(pairs[s]) for s in ("train", "val", "test")] == [577, 192, 192]
    assert not (pairs["train"] & pairs["val"]) and not (pairs["train"] & pairs["test"])
    assert not (pairs["val"] & pairs["test"])
    assert len(pairs["train"] | pairs["val"] | pairs["test"]) == 31 * 31
    assert all(int(y) == (a + b) % 31 for a, b, y in zip(d["a_test"].tolist(), d["b_test"].tolist(),
                                                           d["y_test"].tolist()))
    monkeypatch.setattr(modular, "_DATA", {})
    again = modular.modular_data(31, 0.6)
    assert all(torch.equal(d[k], again[k]) for k in d)


def test_char_lm_test_text_is_other_modules_than_train_and_val():
    mods = [set(char_lm.TRAIN_MODULES), set(char_lm.VAL_MODULES), set(char_lm.TEST_MODULES)]
    assert not (mods[0] & mods[1]) and not (mods[0] & mods[2]) and not (mods[1] & mods[2])
    task = get_task("char_lm")
    val, test = task.windows["val"], task.windows["test"]
    assert val.shape == test.shape == (task.n_val_windows, task.ctx + 1)
    assert not torch.equal(val, test)
    text = char_lm.corpus()
    assert 0.5 < len(text["test"]) / len(text["val"]) < 2  # a comparable amount of held-out text


@pytest.mark.parametrize("name", ["digits_logreg", "digits_mlp", "char_lm", "modular_arith"])
def test_test_metric_is_its_own_and_deterministic(name):
    t = get_task(name)
    val = t.sweep(ADAMW, [1e-2], [0], "tiny")
    test = t.sweep(ADAMW, [1e-2], [0], "tiny", split="test")
    again = t.sweep(ADAMW, [1e-2], [0], "tiny", split="test")
    assert val.metric_name == "val_loss" and val.split == "val"
    assert test.metric_name == t.metric_key("test") == "test_loss" and test.split == "test"
    assert math.isfinite(test.final[0, 0]) and test.final[0, 0] != val.final[0, 0]
    np.testing.assert_array_equal(test.curves, again.curves)
    # the same training run: the initial model is the same, only the held-out data differs
    assert val.curves[0, 0, 0] != test.curves[0, 0, 0]
    if "val_acc" in val.extra_curves:
        assert set(test.extra_curves) == {"test_acc"}


@pytest.mark.parametrize("name", ["quadratic", "rosenbrock"])
def test_objective_tasks_report_the_same_objective_on_test(name):
    t = get_task(name)
    val = t.sweep(ADAMW, [1e-2], [0], "tiny")
    test = t.sweep(ADAMW, [1e-2], [0], "tiny", split="test")
    assert test.metric_name == val.metric_name == "loss"
    np.testing.assert_array_equal(val.curves, test.curves)


def test_every_task_accepts_both_splits_and_refuses_others():
    assert SPLITS == ("val", "test")
    for name in list_tasks():
        for s in SPLITS:
            get_task(name).metric_key(s)
    with pytest.raises(ValueError, match="unknown split 'train'"):
        get_task("quadratic").sweep(ADAMW, [1e-3], [0], "tiny", split="train")


def _config(split: str, tmp_path) -> RuleEvalConfig:
    return RuleEvalConfig(tasks=["digits_logreg"], lr_grid=LrGrid.from_range(1e-2, 1.0, 3), seeds=[0],
                          executor="inprocess", split=split, cache_dir=str(tmp_path / "cache"))


def test_evaluator_scores_on_test_and_its_cache_keeps_val_and_test_apart(tmp_path):
    val_cfg, test_cfg = _config("val", tmp_path), _config("test", tmp_path)
    assert val_cfg.result_hash() != test_cfg.result_hash()
    with pytest.raises(ValueError, match="split"):
        RuleEvalConfig(split="train")
    cache = EvalCache(str(tmp_path / "cache"))
    with RuleEvaluator(val_cfg, cache=cache) as ev:
        v = ev.evaluate([Candidate(text=SGDM)], "tiny")[0]
        assert ev.trained == 1
    with RuleEvaluator(test_cfg, cache=cache) as ev:
        t = ev.evaluate([Candidate(text=SGDM)], "tiny")[0]
        assert ev.trained == 1 and not t.cached           # not served the val result
        t2 = ev.evaluate([Candidate(text=SGDM)], "tiny")[0]
        assert t2.cached and t2.score == t.score
        base_test = ev.baselines("tiny")["digits_logreg"]
    with RuleEvaluator(val_cfg, cache=cache) as ev:
        v2 = ev.evaluate([Candidate(text=SGDM)], "tiny")[0]
        assert v2.cached and ev.trained == 0 and v2.score == v.score
        base_val = ev.baselines("tiny")["digits_logreg"]
    assert v.status == t.status == Status.ok
    vt, tt = v.tasks["digits_logreg"], t.tasks["digits_logreg"]
    assert vt.metric_name == "val_loss" and tt.metric_name == "test_loss"
    assert vt.metric != tt.metric and vt.baseline != tt.baseline
    assert base_val.metric_name == "val_loss" and base_test.metric_name == "test_loss"
    assert base_val.final != base_test.final


def test_a_campaign_refuses_to_search_on_the_test_split(tmp_path):
    f = tmp_path / "leak.toml"
    f.write_text('name = "leak"\nseed_rules = ["sgd_momentum"]\ntasks = ["quadratic"]\n'
                 '[budget]\nevaluations = 4\n[evaluator]\nsplit = "test"\n')
    with pytest.raises(CampaignError, match="leak.toml.*split.*test.*optforge eval RULE --split test"):
        load_campaign(f)
    f.write_text(f.read_text().replace('split = "test"', 'split = "val"'))
    assert load_campaign(f).evaluator == {"split": "val"}


def test_cli_eval_split_test_prints_the_test_table(capsys):
    rc = main(["eval", "sgd_momentum", "--tasks", "digits_logreg,quadratic", "--fidelity", "tiny",
               "--lrs", "1e-2:1:3", "--seeds", "0", "--executor", "inprocess", "--split", "test",
               "--noise-replicates", "0"])
    cap = capsys.readouterr()
    assert rc == 0
    assert "held-out test split" in cap.out and "test_loss" in cap.out and "overall score" in cap.out
    assert "val_loss" not in cap.out and "test split" in cap.err


def test_cli_eval_rejects_an_unknown_split():
    with pytest.raises(SystemExit) as e:
        main(["eval", "sgd_momentum", "--split", "train"])
    assert e.value.code == 2
