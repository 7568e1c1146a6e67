"""Library rules vs their references, float64, a few hundred steps, tight tolerance.

The problem: per parameter ``p`` (1-D, 2-D and 3-D), the quadratic loss
``0.5 * |A p - b|^2`` with a random well-conditioned ``A``, so every gradient
depends on the current parameter and errors would compound over the steps.
The DSL side is the reference interpreter ``dsl.run_rule``.
"""
import math

import pytest
import torch

import dsl
from dsl import get_rule, list_rules, run_rule
from dsl_cases import load_export

STEPS = 300
SHAPES = [(6,), (5, 4), (3, 2, 2)]
RTOL, ATOL = 1e-10, 1e-12
F64 = torch.float64


def problem(seed=0, shapes=SHAPES):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for shape in shapes:
        n = math.prod(shape)
        a = torch.randn(n, n, generator=gen, dtype=F64) / math.sqrt(n) + torch.eye(n, dtype=F64)
        b = 10 * torch.randn(n, generator=gen, dtype=F64)  # optimum far away: no noisy end phase
        p0 = torch.randn(shape, generator=gen, dtype=F64)
        out.append((a, b, p0))
    return out


def quad_grad(a, b, p):
    return (a.T @ (a @ p.reshape(-1) - b)).reshape(p.shape)


def run_dsl(name, lr, wd, steps=STEPS, hyper=None, shapes=SHAPES):
    prog = get_rule(name)
    out = []
    for a, b, p0 in problem(shapes=shapes):
        w, state = p0.clone(), {}
        for t in range(1, steps + 1):
            w, state = run_rule(prog, w, quad_grad(a, b, w), state, lr=lr, wd=wd, step=t, hyper=hyper)
        out.append(w)
    return out


def run_torch(make_opt, steps=STEPS, shapes=SHAPES):
    out = []
    for a, b, p0 in problem(shapes=shapes):
        p = torch.nn.Parameter(p0.clone())
        opt = make_opt([p])
        for _ in range(steps):
            with torch.no_grad():
                p.grad = quad_grad(a, b, p)
            opt.step()
        out.append(p.detach())
    return out


def run_formula(update, steps=STEPS, shapes=SHAPES):
    """``update(p, g, state: dict, t) -> p``, a plain formula written here."""
    out = []
    for a, b, p0 in problem(shapes=shapes):
        p, state = p0.clone(), {}
        for t in range(1, steps + 1):
            p = update(p, quad_grad(a, b, p), state, t)
        out.append(p)
    return out


def assert_same(got, want, shapes=SHAPES, rtol=RTOL, atol=ATOL):
    assert len(got) == len(want) == len(shapes)
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)
    # the problem is not trivial: the parameters moved
    assert all((x - p0).abs().max() > 1e-3 for x, (_, _, p0) in zip(got, problem(shapes=shapes)))


TORCH_CASES = {
    "sgd": (0.05, 0.01, lambda ps: torch.optim.SGD(ps, lr=0.05, weight_decay=0.01)),
    "sgd_momentum": (0.02, 0.01, lambda ps: torch.optim.SGD(ps, lr=0.02, momentum=0.9, weight_decay=0.01)),
    "nesterov": (0.02, 0.01, lambda ps: torch.optim.SGD(ps, lr=0.02, momentum=0.9, nesterov=True,
                                                       weight_decay=0.01)),
    "adam": (0.01, 0.01, lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.01)),
    "adamw": (0.01, 0.1, lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1)),
    "rmsprop": (0.003, 0.01, lambda ps: torch.optim.RMSprop(ps, lr=0.003, weight_decay=0.01)),
    "adagrad": (0.1, 0.01, lambda ps: torch.optim.Adagrad(ps, lr=0.1, weight_decay=0.01)),
}


@pytest.mark.parametrize("name", list(TORCH_CASES))
def test_matches_torch_optim(name):
    lr, wd, make = TORCH_CASES[name]
    assert_same(run_dsl(name, lr, wd), run_torch(make))


def test_adagrad_lr_decay_matches_torch():
    got = run_dsl("adagrad", 0.1, 0.0, hyper={"lr_decay": 0.01})
    assert_same(got, run_torch(lambda ps: torch.optim.Adagrad(ps, lr=0.1, lr_decay=0.01)))


def test_adam_hyperparameters_override_like_torch():
    got = run_dsl("adam", 0.01, 0.0, hyper={"beta1": 0.8, "beta2": 0.99, "eps": 1e-6})
    assert_same(got, run_torch(lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6)))


def _lion(lr, wd, b1=0.9, b2=0.99):
    def update(p, g, st, t):
        m = st.get("m", torch.zeros_like(p))
        c = (1 - b1) * g + b1 * m
        st["m"] = (1 - b2) * g + b2 * m
        return p - lr * (torch.sign(c) + wd * p)
    return update


def _signsgd(lr, wd):
    return lambda p, g, st, t: p - lr * (torch.sign(g) + wd * p)


def _signum(lr, wd, beta=0.9):
    def update(p, g, st, t):
        m = (1 - beta) * g + beta * st.get("m", torch.zeros_like(p))
        st["m"] = m
        return p - lr * (torch.sign(m) + wd * p)
    return update


def _adabelief(lr, wd, b1=0.9, b2=0.999, eps=1e-16):
    def update(p, g, st, t):
        m = b1 * st.get("m", torch.zeros_like(p)) + (1 - b1) * g
        s = b2 * st.get("s", torch.zeros_like(p)) + (1 - b2) * (g - m) ** 2 + eps
        st["m"], st["s"] = m, s
        m_hat, s_hat = m / (1 - b1 ** t), s / (1 - b2 ** t)
        return p * (1 - lr * wd) - lr * m_hat / (torch.sqrt(s_hat) + eps)
    return update


def newton_schulz5(x):
    """Muon's quintic iteration, written out from the paper/blog description."""
    a, b, c = 3.4445, -4.7750, 2.0315
    y = x / (torch.linalg.matrix_norm(x) + 1e-7)
    tall = y.shape[0] > y.shape[1]
    if tall:
        y = y.T
    for _ in range(5):
        s = y @ y.T
        y = a * y + (b * s + c * s @ s) @ y
    return y.T if tall else y


def _muon(lr, wd, mu=0.95):
    def update(p, g, st, t):
        buf = mu * st.get("buf", torch.zeros_like(p)) + (1 - mu) * g
        st["buf"] = buf
        look = (1 - mu) * g + mu * buf
        u = newton_schulz5(look.reshape(p.shape[0], -1)).reshape(p.shape) if p.dim() >= 2 else look
        return p * (1 - lr * wd) - lr * u
    return update


def _muon_scaled(lr, wd, mu=0.95):
    """Muon with the shape factor sqrt(max(1, rows / cols)) taken from the tensor's shape."""
    def update(p, g, st, t):
        buf = mu * st.get("buf", torch.zeros_like(p)) + (1 - mu) * g
        st["buf"] = buf
        look = (1 - mu) * g + mu * buf
        if p.dim() >= 2:
            rows, cols = p.shape[0], p[0].numel()
            u = newton_schulz5(look.reshape(rows, cols)).reshape(p.shape) * max(1.0, rows / cols) ** 0.5
        else:
            u = look
        return p * (1 - lr * wd) - lr * u
    return update


FORMULA_CASES = {
    "lion": (0.003, 0.1, _lion),
    "signsgd": (0.003, 0.1, _signsgd),
    "signum": (0.003, 0.1, _signum),
    "adabelief": (0.01, 0.1, _adabelief),
    "muon": (0.02, 0.1, _muon),
    "muon_scaled": (0.02, 0.1, _muon_scaled),
}


@pytest.mark.parametrize("name", list(FORMULA_CASES))
def test_matches_paper_formula(name):
    lr, wd, make = FORMULA_CASES[name]
    assert_same(run_dsl(name, lr, wd), run_formula(make(lr, wd)))


def test_muon_orthogonalizes_matrices():
    """One step from zero state: the 2-D update has singular values near 1 (Newton-Schulz band)."""
    prog = get_rule("muon")
    w = torch.zeros(6, 4, dtype=F64)
    g = torch.randn(6, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    new_w, _ = run_rule(prog, w, g, {}, lr=1.0, wd=0.0, step=1)
    sv = torch.linalg.svdvals(-new_w)
    assert sv.min() > 0.6 and sv.max() < 1.3


def test_muon_scaled_applies_the_shape_factor():
    """Tall matrices (rows > cols, here (5, 4)) get sqrt(rows/cols); wide ones ((3, 2, 2) is 3 x 4)
    and vectors get 1: the scaled rule's update is the plain one times that factor."""
    gen = torch.Generator().manual_seed(2)
    for shape, factor in (((5, 4), (5 / 4) ** 0.5), ((8, 2), 2.0), ((3, 2, 2), 1.0), ((6,), 1.0)):
        g = torch.randn(shape, generator=gen, dtype=F64)
        w = torch.zeros(shape, dtype=F64)
        plain, _ = run_rule(get_rule("muon"), w, g, {}, lr=1.0, wd=0.0, step=1)
        scaled, _ = run_rule(get_rule("muon_scaled"), w, g, {}, lr=1.0, wd=0.0, step=1)
        torch.testing.assert_close(scaled, plain * factor, rtol=1e-14, atol=0)


def test_every_rule_is_valid():
    """Coverage (every rule has a reference) is checked in test_library_zoo.py, which adds the zoo."""
    for name in list_rules():
        prog = get_rule(name)
        assert prog.name == name
        assert dsl.parse(prog.source()) == prog
        report = dsl.check(prog)
        assert not report.dead and not report.unused_inputs and not report.warnings, (name, report.summary())


def test_library_fingerprints_are_distinct():
    # AdamP is AdamW except where a gradient is nearly orthogonal to its weights; the fingerprint's
    # row-orthogonal probe for shaped rules tells them apart (else the cache would give AdamP
    # AdamW's scores)
    by_fp: dict[str, set[str]] = {}
    for name in list_rules():
        by_fp.setdefault(dsl.fingerprint(get_rule(name)), set()).add(name)
    shared = [sorted(v) for v in by_fp.values() if len(v) > 1]
    assert not shared, shared


def test_unknown_rule_names_the_known_ones():
    with pytest.raises(KeyError, match="lion"):
        get_rule("no_such_rule")


# ---------------------------------------------------------------------------------------------
# the same references, through the compiled optimizer and the exported module (float64)
# ---------------------------------------------------------------------------------------------

def _reference(name):
    if name in TORCH_CASES:
        lr, wd, make = TORCH_CASES[name]
        return lr, wd, run_torch(make)
    lr, wd, make = FORMULA_CASES[name]
    return lr, wd, run_formula(make(lr, wd))


def run_optimizer_class(Opt, lr, wd, steps=STEPS, shapes=SHAPES, hyper=None):
    """All the problem's parameters in one optimizer (one foreach bucket per step)."""
    prob = problem(shapes=shapes)
    params = [torch.nn.Parameter(p0.clone()) for _, _, p0 in prob]
    opt = Opt(params, lr=lr, weight_decay=wd, **(hyper or {}))
    for _ in range(steps):
        with torch.no_grad():
            for p, (a, b, _) in zip(params, prob):
                p.grad = quad_grad(a, b, p)
        opt.step()
    return [p.detach() for p in params]


def load_exported(name, tmp_path):
    return load_export(get_rule(name), "Exported", tmp_path, f"lib_export_{name}")[0]


@pytest.mark.parametrize("name", list(TORCH_CASES) + list(FORMULA_CASES))
def test_compiled_and_exported_match_the_reference(name, tmp_path):
    """interpreter (above), compiled optimizer and exported module: each against torch.optim
    or the paper's formula, the same few hundred float64 steps, the same tolerance."""
    lr, wd, want = _reference(name)
    assert_same(run_optimizer_class(dsl.to_optimizer(get_rule(name)), lr, wd), want)
    assert_same(run_optimizer_class(load_exported(name, tmp_path), lr, wd), want)
