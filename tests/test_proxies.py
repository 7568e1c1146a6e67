"""Rule proxy tasks: vectorized K-copy training behaves exactly like K separate runs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dsl
from proxies import DEFAULT_SUITE, FIDELITIES, RuleTask, StackedTask, SweepOutcome, get_task, list_tasks
from proxies.tasks.core import curve_steps, gen, linear, normal
from support import ADAMW  # the library's AdamW text

SGDM = """def sgdm(w, g, m, lr, wd, mu=0.9):
    m = mu * m + g + wd * w
    w = w - lr * m
    return w, m
"""
# per-tensor reductions and a matrix primitive: exercises the shape-group path
NORMED = """def normed(w, g, m, lr, wd, beta=0.9):
    m = interp(g, m, beta)
    u = orthogonalize(m) + m / (norm(m) + 1e-8)
    w = w * (1 - lr * wd) - lr * u
    return w, m
"""
EXPLODE = """def explode(w, g):
    w = w * 1e10
    return w
"""
HAND_WRITTEN = ["quadratic", "rosenbrock", "digits_logreg", "digits_mlp", "char_lm", "modular_arith"]
ALL_TASKS = HAND_WRITTEN + ["digits_cnn", "seq_reverse", "text_rnn", "digits_ae", "diabetes_reg", "embed_memo",
                            "cancer_bce", "wine_deep"]
# a learning rate at which AdamW makes clear progress within the tiny budget, per task
GOOD_LR = {"quadratic": 3e-2, "rosenbrock": 3e-2, "digits_logreg": 3e-2, "digits_mlp": 1e-2,
           "char_lm": 1e-2, "modular_arith": 2e-1, "digits_cnn": 3e-2, "seq_reverse": 3e-2, "text_rnn": 3e-2,
           "digits_ae": 3e-2, "diabetes_reg": 1e-3, "embed_memo": 1e-1, "cancer_bce": 3e-2, "wine_deep": 3e-3}
# plain SGD+momentum learning rates: one that trains, one that blows up
SGD_LRS = {"quadratic": (0.3, 1e3), "rosenbrock": (1e-4, 1.0), "digits_logreg": (0.1, 1e4),
           "digits_mlp": (0.05, 1e4), "char_lm": (0.1, 1e4), "modular_arith": (0.05, 1e4)}


def test_registry_and_contract():
    assert FIDELITIES == ("tiny", "small", "full")
    ladder = ["lm_s", "lm_m", "lm_l"]   # trained in tests/test_lm_ladder.py (lm_l is too big to train here)
    assert list_tasks() == ALL_TASKS + ladder
    assert set(DEFAULT_SUITE) <= set(ALL_TASKS)
    for name in ALL_TASKS + ladder:
        t = get_task(name)
        assert isinstance(t, RuleTask)
        assert t.name == name and get_task(name) is t
        assert list(t.steps) == list(FIDELITIES)
        assert t.steps["tiny"] < t.steps["small"] < t.steps["full"]
        assert t.metric_name and t.higher_is_better is False and t.weight_decay >= 0


def test_bad_inputs_give_clear_errors():
    with pytest.raises(KeyError, match="known tasks: quadratic"):
        get_task("imagenet")
    t = get_task("quadratic")
    with pytest.raises(ValueError, match="unknown fidelity 'huge'.*tiny"):
        t.sweep(ADAMW, [1e-3], [0], "huge")
    with pytest.raises(ValueError, match="learning rates"):
        t.sweep(ADAMW, [float("nan")], [0], "tiny")
    with pytest.raises(ValueError, match="at least one"):
        t.sweep(ADAMW, [], [0], "tiny")
    with pytest.raises(ValueError, match=r"\['gamma'\] are not in rule 'adamw'"):
        t.sweep(ADAMW, [1e-3], [0], "tiny", hyper={"gamma": 0.5})
    with pytest.raises(dsl.DSLError):
        t.sweep("def f(w, g):\n    import os\n", [1e-3], [0], "tiny")


@pytest.mark.parametrize("name", ALL_TASKS)
def test_adamw_improves_the_metric(name):
    t = get_task(name)
    lrs = [GOOD_LR[name], GOOD_LR[name] / 10]
    out = t.sweep(dsl.parse(ADAMW), lrs, [0], "tiny")
    assert isinstance(out, SweepOutcome)
    n_pts = len(out.curve_steps)
    assert out.final.shape == (2, 1) and out.diverged.shape == (2, 1) and out.curves.shape == (2, 1, n_pts)
    assert out.curve_steps[0] == 0 and out.curve_steps[-1] == t.steps["tiny"] == out.steps_run
    assert 10 <= n_pts <= 20
    assert not out.diverged.any()
    assert np.isfinite(out.curves).all()
    assert out.final[0, 0] == out.curves[0, 0, -1]
    initial = out.curves[0, 0, 0]
    assert out.curves[1, 0, 0] == initial                      # same seed -> same initial model
    assert out.final[0, 0] < 0.9 * initial, (name, initial, out.final[:, 0])
    for key, curve in out.extra_curves.items():
        assert curve.shape == out.curves.shape and np.isfinite(curve).all(), key
    assert out.seconds > 0


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_divergence_is_isolated(name):
    """A blown-up copy is marked and frozen; the other copy is bit-for-bit what it is alone."""
    t = get_task(name)
    good, bad = SGD_LRS[name]
    both = t.sweep(SGDM, [good, bad], [0], "tiny")
    alone = t.sweep(SGDM, [good], [0], "tiny")
    assert both.diverged.tolist() == [[False], [True]]
    assert np.isnan(both.final[1, 0]) and np.isfinite(both.final[0, 0])
    at = both.diverged_at[1, 0]
    assert 0 < at <= t.steps["tiny"] and both.diverged_at[0, 0] == -1
    assert np.isnan(both.curves[1, 0][np.array(both.curve_steps) >= at]).all()
    np.testing.assert_allclose(both.curves[0], alone.curves[0], rtol=1e-5, atol=1e-6)
    assert both.final[0, 0] < both.curves[0, 0, 0]


def test_exploding_rule_stops_early_without_exceptions():
    t = get_task("digits_mlp")
    out = t.sweep(EXPLODE, [1e-3, 1e-2], [0, 1], "tiny")
    assert out.diverged.all() and np.isnan(out.final).all()
    assert out.steps_run < t.steps["tiny"]
    assert np.isfinite(out.curves[..., 0]).all() and np.isnan(out.curves[..., -1]).all()


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_stacked_run_equals_separate_runs(name):
    """K = 2 lrs x 2 seeds in one run gives each copy's metric curve as running it alone.

    The off-diagonal copies (lr 0, seed 1) and (lr 1, seed 0) pin the [lr, seed] layout.
    """
    t = get_task(name)
    lrs, seeds = [GOOD_LR[name], GOOD_LR[name] / 3], [3, 4]
    out = t.sweep(ADAMW, lrs, seeds, "tiny")
    for i, j in ((0, 1), (1, 0)):
        one = t.sweep(ADAMW, [lrs[i]], [seeds[j]], "tiny")
        np.testing.assert_allclose(out.curves[i, j], one.curves[0, 0], rtol=2e-5, atol=1e-6)
        for k, curve in one.extra_curves.items():
            np.testing.assert_allclose(out.extra_curves[k][i, j], curve[0, 0], rtol=2e-5, atol=1e-6)
    assert out.curves[0, 0, 0] != out.curves[0, 1, 0]            # seeds differ in init
    assert out.curves[0, 0, 0] == out.curves[1, 0, 0]            # lrs share the seed's init


def test_deterministic():
    for name in ("digits_mlp", "char_lm", "modular_arith", "quadratic"):
        t = get_task(name)
        a = t.sweep(SGDM, [1e-2, 1e4], [0, 1], "tiny")
        b = t.sweep(SGDM, [1e-2, 1e4], [0, 1], "tiny")
        assert a.diverged[1].all() and not a.diverged[0].any()
        np.testing.assert_array_equal(a.curves, b.curves)
        np.testing.assert_array_equal(a.diverged, b.diverged)
        for k in a.extra_curves:
            np.testing.assert_array_equal(a.extra_curves[k], b.extra_curves[k])


def test_sgd_and_adamw_on_digits_mlp():
    t = get_task("digits_mlp")
    lrs = [1e-3, 1e-2, 1e-1]
    sgd = t.sweep(SGDM, lrs, [0], "tiny")
    adam = t.sweep(ADAMW, lrs, [0], "tiny")
    for out in (sgd, adam):
        assert np.isfinite(out.final).all() and not out.diverged.any()
        assert ((out.final > 0) & (out.final < 2.5)).all()
        assert out.final.min() < 0.7 * out.curves[0, 0, 0]
        acc = out.extra_curves["val_acc"][:, 0, -1]
        assert ((acc >= 0) & (acc <= 1)).all() and acc.max() > 0.7
    # Adam is scale-invariant: lr 1e-3 moves far more than SGD at lr 1e-3 on this net
    assert adam.final[0, 0] < sgd.final[0, 0]


def test_hyper_override_changes_the_run():
    t = get_task("digits_logreg")
    base = t.sweep(SGDM, [0.05], [0], "tiny")
    same = t.sweep(SGDM, [0.05], [0], "tiny", hyper={"mu": 0.9})
    other = t.sweep(SGDM, [0.05], [0], "tiny", hyper={"mu": 0.0})
    np.testing.assert_array_equal(base.curves, same.curves)
    assert not np.allclose(base.curves[..., -1], other.curves[..., -1])


# -- the core against a plain per-copy reference --------------------------------------

class _TwinLayers(StackedTask):
    """Two same-shape weight matrices and two same-shape biases (exercises shape groups)."""
    name = "twin"
    steps = {"tiny": 6, "small": 12, "full": 24}
    weight_decay = 0.1
    schedule = "warmup_cosine"
    n_points = 4

    def __init__(self):
        g = gen(99, 1)
        self.x, self.y = torch.randn(32, 8, generator=g), torch.randint(0, 8, (32,), generator=g)

    def init(self, seed):
        g = gen(seed, 2)
        return {"w1": normal(g, 8, 8, std=0.4), "b1": normal(g, 8, std=0.1),
                "w2": normal(g, 8, 8, std=0.4), "b2": normal(g, 8, std=0.1)}

    def logits(self, p, x):
        return linear(torch.tanh(linear(x, p["w1"], p["b1"])), p["w2"], p["b2"])

    def loss(self, p, ctx, t):
        K = p["w1"].shape[0]
        xb = self.x[(t * 8) % 32:(t * 8) % 32 + 8]
        yb = self.y[(t * 8) % 32:(t * 8) % 32 + 8]
        z = self.logits(p, xb.expand(K, 8, 8))
        return torch.nn.functional.cross_entropy(z.transpose(1, 2), yb.expand(K, 8), reduction="none").mean(1)

    def evaluate(self, p, ctx):
        K = p["w1"].shape[0]
        z = self.logits(p, self.x.expand(K, 32, 8))
        return {"val_loss": torch.nn.functional.cross_entropy(z.transpose(1, 2), self.y.expand(K, 32),
                                                              reduction="none").mean(1)}


def _reference(task: _TwinLayers, src: str, lr: float, seed: int, fidelity: str) -> list[float]:
    """The same training written the plain way: one copy, one run_rule per tensor."""
    prog = dsl.parse(src)
    steps = task.steps[fidelity]
    p = {k: v.clone() for k, v in task.init(seed).items()}
    state = {k: {} for k in p}
    factors = task.lr_factors(steps)
    pts = curve_steps(steps, task.n_points)
    curve = []
    for t in range(steps + 1):
        if t in pts:
            with torch.no_grad():
                curve.append(float(task.evaluate({k: v[None] for k, v in p.items()}, None)["val_loss"][0]))
        if t == steps:
            break
        leaves = {k: v.detach().requires_grad_(True) for k, v in p.items()}
        loss = task.loss({k: v[None] for k, v in leaves.items()}, None, t)[0]
        grads = torch.autograd.grad(loss, list(leaves.values()))
        with torch.no_grad():
            for (k, w), g in zip(leaves.items(), grads):
                lr_t = torch.tensor(lr, dtype=torch.float32) * float(factors[t])
                p[k], state[k] = dsl.run_rule(prog, w.detach(), g, state[k], lr=lr_t, wd=task.weight_decay,
                                              step=t + 1)
    return curve


@pytest.mark.parametrize("src", [ADAMW, NORMED])
def test_core_matches_plain_reference(src):
    task = _TwinLayers()
    assert dsl.per_element(dsl.parse(src)) == (src is ADAMW)   # flat path vs shape-group path
    lrs, seeds = [0.05, 0.01], [0, 1]
    out = task.sweep(src, lrs, seeds, "small")
    assert not out.diverged.any()
    for i, lr in enumerate(lrs):
        for j, s in enumerate(seeds):
            ref = _reference(task, src, lr, s, "small")
            np.testing.assert_allclose(out.curves[i, j], ref, rtol=1e-5, atol=1e-6)


def test_lr_schedules():
    t = _TwinLayers()
    f = t.lr_factors(100)
    assert f.shape == (100,) and f[0] == pytest.approx(0.2) and f.max() == pytest.approx(1.0)
    assert f[-1] == pytest.approx(t.final_lr_frac, abs=0.01) and (np.diff(f[5:]) <= 1e-12).all()
    assert (get_task("quadratic").lr_factors(10) == 1).all()
    assert curve_steps(3, 11) == [0, 1, 2, 3]


def test_thread_override_is_validated_and_restored(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OPTFORGE_TORCH_THREADS", "zero")
    with pytest.raises(ValueError, match="OPTFORGE_TORCH_THREADS"):
        get_task("quadratic").sweep(ADAMW, [1e-3], [0], "tiny")
    for v in ("2", "default", ""):
        monkeypatch.setenv("OPTFORGE_TORCH_THREADS", v)
        assert math.isfinite(get_task("quadratic").sweep(ADAMW, [1e-3], [0], "tiny").final[0, 0])
        assert torch.get_num_threads() == before
