"""The generic ModuleTask, the new task families, user task specs, and the sweep's wd grid and
successive-halving rungs (real training, tiny fidelity)."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

import dsl
import proxies
from proxies import (
    TASK_GROUPS,
    ModuleTask,
    Rung,
    TaskDefinitionError,
    TaskLoadError,
    UnknownTaskError,
    get_task,
    list_tasks,
    resolve_task,
    task_family,
)
from proxies.tasks.families import FAMILIES

ADAMW = dsl.get_rule("adamw")
SGDM = dsl.get_rule("sgd_momentum")
GOOD_LR = {"digits_cnn": 3e-2, "seq_reverse": 3e-2, "text_rnn": 3e-2, "digits_ae": 3e-2, "diabetes_reg": 1e-3,
           "embed_memo": 1e-1, "cancer_bce": 3e-2, "wine_deep": 3e-3}


def test_families_are_registered_with_groups_disjoint_in_family():
    assert set(GOOD_LR) == set(FAMILIES) and set(FAMILIES) <= set(list_tasks())
    seen: dict[str, str] = {}
    for group, names in TASK_GROUPS.items():
        assert names and set(names) <= set(list_tasks()), group
        for n in names:
            fam = task_family(n)
            assert seen.setdefault(fam, group) == group, f"family {fam} is in {seen[fam]} and {group}"
    assert TASK_GROUPS["search"] == proxies.DEFAULT_SUITE
    assert task_family("digits_logreg") == task_family("digits_mlp")
    proxies.check_disjoint(TASK_GROUPS)
    with pytest.raises(proxies.TaskOverlapError, match="validation and search must be disjoint but share task "
                       "'quadratic'"):
        proxies.check_disjoint({"search": ["quadratic", "char_lm"], "validation": ["quadratic"]})
    with pytest.raises(proxies.TaskOverlapError, match="'digits_logreg' and 'digits_mlp' \\(family"):
        proxies.check_disjoint({"search": ["digits_mlp"], "validation": ["digits_logreg"]})
    proxies.check_disjoint({"search": ["digits_mlp"], "validation": ["digits_logreg"]}, by_family=False)


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("split", ["val", "test"])
def test_new_family_trains_with_adamw_on_every_split(name, split):
    t = get_task(name)
    assert isinstance(t, ModuleTask) and list(t.steps) == ["tiny", "small", "full"]
    out = t.sweep(ADAMW, [GOOD_LR[name]], [0], "tiny", split=split)
    assert out.metric_name == f"{split}_loss" and not out.diverged.any()
    assert np.isfinite(out.curves).all()
    assert out.final[0, 0] < 0.9 * out.curves[0, 0, 0], (name, split, out.curves[0, 0])
    for key, curve in out.extra_curves.items():
        assert key.startswith(split + "_") and np.isfinite(curve).all()


def test_module_task_stacked_equals_separate_and_isolates_divergence():
    t = get_task("diabetes_reg")
    both = t.sweep(SGDM, [1e-2, 10.0], [3, 4], "tiny")
    assert both.diverged.tolist() == [[False, False], [True, True]]
    alone = t.sweep(SGDM, [1e-2], [4], "tiny")
    np.testing.assert_allclose(both.curves[0, 1], alone.curves[0, 0], rtol=2e-5, atol=1e-7)
    assert both.curves[0, 0, 0] != both.curves[0, 1, 0]          # seeds differ in init


def test_dropout_is_seeded_per_run():
    t = get_task("wine_deep")
    a = t.sweep(ADAMW, [3e-3, 1e-2], [0, 1], "tiny")
    b = t.sweep(ADAMW, [3e-3, 1e-2], [0, 1], "tiny")
    np.testing.assert_array_equal(a.curves, b.curves)


def test_a_module_that_updates_buffers_is_refused():
    def data():
        x = torch.randn(8, 3)
        return {s: (x, x) for s in ("train", "val", "test")}
    t = ModuleTask("bn", lambda: torch.nn.BatchNorm1d(3), data, lambda o, y: ((o - y) ** 2).mean(),
                   steps={"tiny": 2, "small": 3, "full": 4}, batch_size=None)
    with pytest.raises(TaskDefinitionError, match="track_running_stats=False"):
        t.sweep(ADAMW, [1e-3], [0], "tiny")
    with pytest.raises(TaskDefinitionError, match="selection metric 'acc'"):
        ModuleTask("x", lambda: torch.nn.Linear(3, 3), data, lambda o, y: o.sum(), metric="acc",
                   steps={"tiny": 2, "small": 3, "full": 4}, batch_size=None)


USER_MODULE = '''
import torch
from torch import nn
import proxies

def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 5, generator=g)
    y = x @ torch.randn(5, 1, generator=g)
    return {"train": (x[:64], y[:64]), "val": (x[64:80], y[64:80]), "test": (x[80:], y[80:])}

def my_task():
    return proxies.ModuleTask("my_regression", lambda: nn.Linear(5, 1), _data,
                              lambda o, y: ((o - y) ** 2).mean(), batch_size=16,
                              steps={"tiny": 40, "small": 80, "full": 160})

INSTANCE = my_task()

def not_a_task():
    return 42

def broken():
    raise RuntimeError("no data here")

class Plain:
    pass

def bad_steps():
    t = my_task()
    t.steps = {"tiny": 10}
    return t

answer = 42
'''


def write_module(tmp_path, monkeypatch, name: str, text: str = USER_MODULE) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_a_user_task_module_loads_and_trains(tmp_path, monkeypatch):
    mod = write_module(tmp_path, monkeypatch, "optforge_user_tasks_a")
    t = resolve_task(f"{mod}:my_task")
    assert isinstance(t, ModuleTask) and t.name == "my_regression"
    assert get_task(f"{mod}:my_task") is t                       # built once per process
    assert isinstance(resolve_task(f"{mod}:INSTANCE"), ModuleTask)
    out = t.sweep(ADAMW, [3e-2, 1e-1], [0, 1], "tiny")
    assert not out.diverged.any() and (out.final < 0.5 * out.curves[:, :, 0]).all()


def test_bad_task_specs_say_what_to_fix(tmp_path, monkeypatch):
    mod = write_module(tmp_path, monkeypatch, "optforge_user_tasks_b")
    cases = {
        "no_such_module_xyz:task": "cannot import module 'no_such_module_xyz'.*PYTHONPATH",
        f"{mod}:missing": "has no attribute 'missing'.*its public callables: .*my_task",
        f"{mod}:not_a_task": "not_a_task\\(\\) returned int, not a proxies.StackedTask",
        f"{mod}:broken": "calling broken\\(\\) raised RuntimeError: no data here",
        f"{mod}:Plain": "class Plain, not a proxies.StackedTask subclass",
        f"{mod}:answer": "answer is a int; expected a proxies.StackedTask",
        f"{mod}:bad_steps": "steps must map each fidelity tiny, small, full",
        f"{mod}:": "expected 'package.module:factory'",
    }
    for spec, why in cases.items():
        with pytest.raises(TaskLoadError, match=why) as e:
            resolve_task(spec)
        assert e.value.spec == spec and spec in str(e.value)
    (tmp_path / "optforge_user_tasks_c.py").write_text("raise ImportError('needs jax')\n")
    with pytest.raises(TaskLoadError, match="importing module 'optforge_user_tasks_c' raised ImportError"):
        resolve_task("optforge_user_tasks_c:t")
    with pytest.raises(UnknownTaskError, match="unknown rule task; known tasks: quadratic") as e:
        resolve_task("imagenet")
    assert isinstance(e.value, KeyError) and isinstance(e.value, TaskLoadError)


def test_wd_grid_sets_each_copys_weight_decay():
    t = get_task("digits_logreg")
    plain = t.sweep(ADAMW, [3e-2], [0], "tiny")
    grid = t.sweep(ADAMW, [3e-2, 3e-2], [0], "tiny", wds=[t.weight_decay, 3.0])
    alone = t.sweep(ADAMW, [3e-2], [0], "tiny", wds=[3.0])
    assert grid.wds == [t.weight_decay, 3.0]
    np.testing.assert_allclose(grid.curves[0], plain.curves[0], rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(grid.curves[1], alone.curves[0], rtol=2e-5, atol=1e-7)
    assert grid.final[1, 0] > grid.final[0, 0] * 1.05            # strong wd hurts here
    with pytest.raises(ValueError, match="one wd per lr"):
        t.sweep(ADAMW, [3e-2, 1e-2], [0], "tiny", wds=[0.0])


def test_successive_halving_keeps_the_best_points_and_drops_the_rest():
    t = get_task("digits_mlp")
    lrs, seeds = [1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], [0, 1]
    full = t.sweep(ADAMW, lrs, seeds, "tiny")
    sh = t.sweep(ADAMW, lrs, seeds, "tiny", rungs=[Rung(0.3, 2)])
    at = full.curve_steps.index(min((s for s in full.curve_steps if 0 < s < t.steps["tiny"]),
                                    key=lambda s: abs(s - 0.3 * t.steps["tiny"])))
    best2 = set(np.argsort(full.curves[:, :, at].mean(1))[:2])
    kept = {i for i in range(len(lrs)) if not sh.pruned[i].any()}
    assert kept == best2 and sh.pruned.sum() == 2 * (len(lrs) - 2) and not sh.diverged.any()
    for i in range(len(lrs)):
        if i in kept:
            np.testing.assert_allclose(sh.curves[i], full.curves[i], rtol=2e-5, atol=1e-7)
        else:
            assert np.isnan(sh.final[i]).all() and np.isnan(sh.curves[i, :, at + 1:]).all()
            np.testing.assert_allclose(sh.curves[i, :, :at + 1], full.curves[i, :, :at + 1], rtol=2e-5)
    steps = t.steps["tiny"]
    cut = full.curve_steps[at]
    assert full.copy_steps == len(lrs) * len(seeds) * steps
    assert sh.copy_steps == len(lrs) * len(seeds) * cut + 2 * len(seeds) * (steps - cut)
    with pytest.raises(ValueError, match="increasing fractions"):
        t.sweep(ADAMW, lrs, seeds, "tiny", rungs=[Rung(0.5, 2), Rung(0.3, 1)])


class _HalfBroken(proxies.StackedTask):
    """Seed 1's metric is NaN from the start, so no grid point ever has all its seeds usable."""
    name = "half_broken"
    metric_name = "val_loss"
    steps = {"tiny": 20, "small": 40, "full": 80}

    def init(self, seed):
        return {"x": torch.ones(3)}

    def prepare(self, copy_seeds, steps):
        return torch.tensor(copy_seeds)

    def loss(self, p, ctx, t):
        return (p["x"] ** 2).sum(-1)

    def evaluate(self, p, ctx, split="val"):
        m = (p["x"] ** 2).sum(-1)
        return {"val_loss": torch.where(ctx == 1, torch.full_like(m, float("nan")), m)}


def test_a_rung_without_any_usable_point_ends_the_run():
    out = _HalfBroken().sweep(SGDM, [1e-2, 1e-1], [0, 1], "tiny", rungs=[Rung(0.5, 1)])
    assert out.diverged[:, 1].all() and not out.diverged[:, 0].any()
    assert out.pruned[:, 0].all() and not out.pruned[:, 1].any()
    assert np.isnan(out.final).all() and out.steps_run == 10
