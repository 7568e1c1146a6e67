"""The language-model ladder: registered rungs, their schedule, roles, training, and examples/lm.toml."""
from pathlib import Path

import numpy as np
import pytest
import torch

import dsl
import proxies
from evaluators import RuleEvalConfig
from proxies.tasks import LM_RUNGS, LadderLM
from search.core import load_campaign
from search.rules import RuleKind, rule_text
from search.rules.kind import eval_config_dict
from search.rules.tasksets import check_task_sets, search_tasks, transfer_tasks, validation_tasks

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_rungs_are_registered_tasks_that_grow_in_size_and_budget():
    names = list(LM_RUNGS)
    assert names == ["lm_s", "lm_m", "lm_l"]
    tasks = [proxies.get_task(n) for n in names]
    sizes = [sum(v.numel() for v in t.init(0).values()) for t in tasks]
    assert sizes == [LM_RUNGS[n].n_params() for n in names]       # the documented count is the real one
    assert sizes[0] < sizes[1] < sizes[2] and sizes[2] > 10 * sizes[0]
    for fid in proxies.FIDELITIES:
        steps = [t.steps[fid] for t in tasks]
        assert steps == sorted(steps) and len(set(steps)) == 3
    # one family per rung: search on one size, validate on another
    assert len({proxies.task_family(n) for n in names}) == 3
    RuleEvalConfig(tasks=names)                                    # usable as evaluator tasks


def test_the_schedule_warms_up_then_decays_by_cosine_to_a_tenth():
    t = proxies.get_task("lm_s")
    f = t.lr_factors(100)
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)       # 10 warm-up steps
    assert np.all(np.diff(f[:10]) > 0) and np.all(np.diff(f[10:]) <= 1e-12)
    assert f[-1] == pytest.approx(0.1, abs=1e-3)
    mid = 10 + 45
    assert f[mid] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 45 / 90)))


def test_every_parameter_has_one_of_the_four_roles():
    t = proxies.get_task("lm_m")
    roles = t.param_roles()
    assert set(roles) == set(t.init(0)) and set(roles.values()) == set(dsl.ROLES)
    assert roles["tok"] == roles["pos"] == "embedding" and roles["head"] == "head"
    assert roles["b0.qkv"] == roles["b1.fc2"] == "matrix" and roles["lnf_g"] == "vector"
    assert all(t.init(0)[n].dim() == 1 for n, r in roles.items() if r == "vector")


ROLE_PROBE = """\
def probe(w, g, lr, wd, is_matrix, is_embedding, is_head, is_vector):
    w = w - lr * (1 * is_matrix + 2 * is_embedding + 3 * is_head + 4 * is_vector)
    return w
"""


class RoleProbe(proxies.StackedTask):
    """Two 2x3 matrices (one a "matrix", one an "embedding") and a vector; metrics: their means."""
    name = "role_probe"
    steps = {"tiny": 3, "small": 4, "full": 5}

    def init(self, seed):
        return {"a": torch.zeros(2, 3), "b": torch.zeros(2, 3), "v": torch.zeros(3)}

    def param_roles(self):
        return {"a": "matrix", "b": "embedding", "v": "vector"}

    def loss(self, p, ctx, t):
        return sum(x.flatten(1).sum(1) for x in p.values())

    def evaluate(self, p, ctx, split="val"):
        m = {k: x.flatten(1).mean(1) for k, x in p.items()}
        return {"val_loss": m["a"], "val_b": m["b"], "val_v": m["v"]}


def test_rules_that_read_roles_get_the_tasks_roles_in_the_stacked_run():
    lr = 0.01
    out = RoleProbe().sweep(dsl.parse(ROLE_PROBE), [lr, 2 * lr], [0, 1], "tiny")
    for i, x in enumerate((lr, 2 * lr)):                    # 3 steps of lr * code(role), constant schedule
        assert out.final[i] == pytest.approx([-3 * x] * 2)
        assert out.extra_curves["val_b"][i, :, -1] == pytest.approx([-6 * x] * 2)   # embedding, not matrix
        assert out.extra_curves["val_v"][i, :, -1] == pytest.approx([-12 * x] * 2)


def test_smallest_rung_trains_deterministically_and_validates_on_held_out_text():
    t = proxies.get_task("lm_s")
    adamw = dsl.get_rule("adamw")
    a = t.sweep(adamw, [1e-4, 3e-3], [0, 1], "tiny")
    assert not a.diverged.any() and a.metric_name == "val_loss"
    start = a.curves[:, :, 0]
    assert np.all((start > 4.0) & (start < 6.0))                   # near log(97) = 4.6 nats/char at init
    assert np.all(a.final[1] < start[1] - 1.5)                     # lr 3e-3 learns in 40 steps
    assert np.all(a.final[1] < a.final[0])                         # and beats a too-small lr
    # seeded, and a copy trains the same alone as inside the stacked grid
    alone = t.sweep(adamw, [3e-3], [1], "tiny")
    assert alone.final[0, 0] == pytest.approx(a.final[1, 1], rel=1e-5)
    test = t.sweep(adamw, [3e-3], [1], "tiny", split="test")
    assert test.metric_name == "test_loss" and test.final[0, 0] != pytest.approx(a.final[1, 1], rel=1e-3)


def test_a_bad_rung_is_refused_with_a_clear_error():
    from proxies.tasks.lm_ladder import LadderRung
    with pytest.raises(ValueError, match="not divisible by 5 heads"):
        LadderLM(LadderRung("bad", d_model=48, n_layer=1, n_head=5, ctx=8, batch=2, tiny=1, small=2, full=3,
                            salt=0))


def test_lm_campaign_screens_on_the_small_rung_validates_on_a_larger_one_and_seeds_from_library_rules():
    c = load_campaign(EXAMPLES / "lm.toml")
    check_task_sets(c)
    assert list(c.seed_rules) == ["adamw", "muon"]
    assert search_tasks(c) == ["lm_s"] and validation_tasks(c) == ["lm_m"]
    small = proxies.get_task("lm_s")
    assert all(LM_RUNGS["lm_m"].n_params() > LM_RUNGS[t].n_params() for t in search_tasks(c))
    assert small.steps["small"] <= 200 and c.budget.wall_seconds <= 25 * 60
    fams = [{proxies.task_family(t) for t in s} for s in (search_tasks(c), validation_tasks(c), transfer_tasks(c))]
    assert all(not fams[i] & fams[j] for i in range(3) for j in range(i + 1, 3))
    cfg = RuleEvalConfig(**eval_config_dict(c, None))
    assert cfg.tasks == ["lm_s"] and cfg.wd_grid is not None and cfg.halving is not None


def test_every_library_rule_can_seed_a_campaign():
    c = load_campaign(EXAMPLES / "lm.toml").model_copy(update={"seed_rules": dsl.list_rules()})
    RuleKind().validate(c)                                         # raises for a seed it cannot use
    for name in dsl.list_rules():
        label, text = rule_text(name)
        assert label == name and dsl.parse(text).source() == dsl.get_rule(name).source()
    with pytest.raises(ValueError, match="neither a library rule"):
        rule_text("muonn")


def test_a_rule_with_matrix_state_survives_a_diverging_copy_on_the_ladder():
    """SOAP keeps m x m preconditioners: freezing a diverged copy must zero them per copy too."""
    out = proxies.get_task("lm_s").sweep(dsl.get_rule("soap"), [3e-3, 1e4], [0], "tiny")
    assert out.diverged[1, 0] and not out.diverged[0, 0]
    assert np.isfinite(out.final[0, 0]) and out.final[0, 0] < out.curves[0, 0, 0] - 1.0
