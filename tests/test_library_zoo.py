"""The modern optimizer zoo (dsl.zoo) against its references, float64, a few hundred steps.

Same problem and tolerance as test_library.py (a quadratic per parameter, 1-D, 2-D and 3-D).
References: torch.optim's own classes at float64 (the default dtype is switched to float64 for
them, so that scalar state such as NAdam's momentum product is float64 too), or a small
plain-torch formula written here from the reference named in its docstring, independently of
the DSL text. Each rule also runs through the compiled optimizer and the exported module.
"""
import math

import pytest
import torch

import dsl
from dsl import get_rule, list_rules, run_rule
from test_library import (
    F64,
    FORMULA_CASES,
    SHAPES,
    TORCH_CASES,
    assert_same,
    load_exported,
    run_dsl,
    run_formula,
    run_optimizer_class,
    run_torch,
)


def run_torch64(make_opt, **kw):
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        return run_torch(make_opt, **kw)
    finally:
        torch.set_default_dtype(old)


def _zeros(st, key, p):
    return st.setdefault(key, torch.zeros_like(p))


# ------------------------------------------------------------------------------------------------
# plain-torch references
# ------------------------------------------------------------------------------------------------

def _lamb(lr, wd, b1=0.9, b2=0.999, eps=1e-6):
    """optax.lamb = scale_by_adam(eps added to sqrt(v_hat)) -> add_decayed_weights(wd) ->
    scale_by_trust_ratio (|w| / |u|, 1.0 where either norm is 0) -> -lr (You et al. 2019, Alg. 2)."""
    def update(p, g, st, t):
        m = _zeros(st, "m", p).mul(b1).add(g, alpha=1 - b1)
        v = _zeros(st, "v", p).mul(b2).add(g * g, alpha=1 - b2)
        st["m"], st["v"] = m, v
        u = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps) + wd * p
        pn, un = torch.linalg.vector_norm(p), torch.linalg.vector_norm(u)
        ratio = 1.0 if pn == 0 or un == 0 else pn / un
        return p - lr * ratio * u
    return update


def _lars(lr, wd, momentum=0.9, trust=0.001):
    """optax.lars = add_decayed_weights(wd) -> scale_by_trust_ratio(trust_coefficient=0.001,
    eps=0; 1.0 where a norm is 0) -> scale(-lr) -> trace(momentum): t = u + momentum t."""
    def update(p, g, st, t):
        d = g + wd * p
        pn, dn = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
        ratio = 1.0 if pn == 0 or dn == 0 else trust * pn / dn
        tr = -lr * ratio * d + momentum * _zeros(st, "trace", p)
        st["trace"] = tr
        return p + tr
    return update


def _cautious_adamw(lr, wd, b1=0.9, b2=0.999, eps=1e-6):
    """C-Optim c_adamw.py, the per-parameter loop: p -= lr wd p; moments; denom = sqrt(v) + eps;
    step = lr sqrt(1 - b2^t) / (1 - b1^t); mask = (m g > 0) / max(mean(mask), 1e-3)."""
    def update(p, g, st, t):
        p = p - lr * wd * p
        m = _zeros(st, "m", p).mul(b1).add(g, alpha=1 - b1)
        v = _zeros(st, "v", p).mul(b2).addcmul(g, g, value=1 - b2)
        st["m"], st["v"] = m, v
        mask = (m * g > 0).to(p.dtype)
        mask = mask / mask.mean().clamp(min=1e-3)
        step = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return p - step * (m * mask) / (v.sqrt() + eps)
    return update


def _mars(lr, wd, b1=0.95, b2=0.99, gamma=0.025, eps=1e-8):
    """MARS/optimizers/mars.py, mars_type="mars-adamw", is_approx (last_grad = this step's g,
    zero at first), optimize_1d=True: c = g + gamma b1/(1-b1) (g - last); c /= |c| if |c| > 1;
    denom = (sqrt(v)/sqrt(bc2) + eps) bc1; p += -lr (wd p + m / denom)."""
    def update(p, g, st, t):
        c = g + gamma * (b1 / (1 - b1)) * (g - _zeros(st, "last", p))
        cn = torch.linalg.vector_norm(c)
        if cn > 1:
            c = c / cn
        m = _zeros(st, "m", p).mul(b1).add(c, alpha=1 - b1)
        v = _zeros(st, "v", p).mul(b2).addcmul(c, c, value=1 - b2)
        st["m"], st["v"], st["last"] = m, v, g
        denom = (v.sqrt() / math.sqrt(1 - b2 ** t) + eps) * (1 - b1 ** t)
        return p - lr * (wd * p + m / denom)
    return update


def _ademamix(lr, wd, b1=0.9, b2=0.999, b3=0.9999, alpha=2.0, t_alpha=None, t_beta3=None, eps=1e-8):
    """apple/ml-ademamix pytorch/ademamix.py: linear alpha warm-up; beta3 warm-up linear in the
    half-life f(b) = log(0.5)/log(b + 1e-8) - 1 from beta1, f_inv(x) = 0.5^(1/(x+1));
    update = (m1 / bc1 + alpha m2) / (sqrt(v)/sqrt(bc2) + eps) + wd p; p -= lr update."""
    def f(b):
        return math.log(0.5) / math.log(b + 1e-8) - 1

    def update(p, g, st, t):
        a = alpha * t / t_alpha if t_alpha is not None and t < t_alpha else alpha
        if t_beta3 is not None and t < t_beta3:
            x = t / t_beta3
            beta3 = math.pow(0.5, 1 / ((1 - x) * f(b1) + x * f(b3) + 1))
        else:
            beta3 = b3
        m1 = _zeros(st, "m1", p).mul(b1).add(g, alpha=1 - b1)
        m2 = _zeros(st, "m2", p).mul(beta3).add(g, alpha=1 - beta3)
        v = _zeros(st, "v", p).mul(b2).addcmul(g, g, value=1 - b2)
        st["m1"], st["m2"], st["v"] = m1, m2, v
        u = (m1 / (1 - b1 ** t) + a * m2) / (v.sqrt() / math.sqrt(1 - b2 ** t) + eps) + wd * p
        return p - lr * u
    return update


def _exadam(lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    """EXAdam (Adly 2024), the official exadam.py: decoupled decay first; d1 = 1 + v/(v+eps) b2^t,
    d2 = 1 + m^2/(m^2+eps) b1^t; m~ = m/bc1 d1, v~ = v/bc2 d2, g~ = g/bc1 d1;
    p -= lr (m~ + g~) / (sqrt(v~) + eps)."""
    def update(p, g, st, t):
        p = p - lr * wd * p
        m = _zeros(st, "m", p).mul(b1).add(g, alpha=1 - b1)
        v = _zeros(st, "v", p).mul(b2).addcmul(g, g, value=1 - b2)
        st["m"], st["v"] = m, v
        d1 = 1 + v / (v + eps) * b2 ** t
        d2 = 1 + m.pow(2) / (m.pow(2) + eps) * b1 ** t
        m_t, v_t, g_t = m / (1 - b1 ** t) * d1, v / (1 - b2 ** t) * d2, g / (1 - b1 ** t) * d1
        return p - lr * (m_t + g_t) / (v_t.sqrt() + eps)
    return update


#: name -> (lr, wd, hyper for the DSL side, reference outputs thunk)
ZOO_TORCH = {
    "adamax": (0.01, 0.01, lambda ps: torch.optim.Adamax(ps, lr=0.01, weight_decay=0.01)),
    "nadam": (0.01, 0.01, lambda ps: torch.optim.NAdam(ps, lr=0.01, weight_decay=0.01)),
    "radam": (0.01, 0.01, lambda ps: torch.optim.RAdam(ps, lr=0.01, weight_decay=0.01)),
}
ZOO_FORMULA = {
    "lamb": (0.003, 0.1, _lamb),  # at 0.01 it reaches the optimum and hops around it (chaotic)
    "lars": (1.0, 0.01, _lars),
    "cautious_adamw": (0.01, 0.1, _cautious_adamw),
    "mars": (0.01, 0.1, _mars),
    "ademamix": (0.01, 0.1, _ademamix),
    "exadam": (0.01, 0.1, _exadam),
}
ZOO = list(ZOO_TORCH) + list(ZOO_FORMULA)


def zoo_reference(name):
    if name in ZOO_TORCH:
        lr, wd, make = ZOO_TORCH[name]
        return lr, wd, run_torch64(make)
    lr, wd, make = ZOO_FORMULA[name]
    return lr, wd, run_formula(make(lr, wd))


@pytest.mark.parametrize("name", ZOO)
def test_zoo_rule_matches_its_reference(name, tmp_path):
    """interpreter, compiled optimizer and exported module, each against the reference."""
    lr, wd, want = zoo_reference(name)
    assert_same(run_dsl(name, lr, wd), want)
    assert_same(run_optimizer_class(dsl.to_optimizer(get_rule(name)), lr, wd), want)
    assert_same(run_optimizer_class(load_exported(name, tmp_path), lr, wd), want)


def test_nadam_and_radam_hyperparameters_like_torch():
    got = run_dsl("nadam", 0.01, 0.0, hyper={"beta1": 0.8, "momentum_decay": 0.01})
    assert_same(got, run_torch64(lambda ps: torch.optim.NAdam(ps, lr=0.01, betas=(0.8, 0.999),
                                                              momentum_decay=0.01)))
    got = run_dsl("radam", 0.01, 0.0, hyper={"beta2": 0.99})
    assert_same(got, run_torch64(lambda ps: torch.optim.RAdam(ps, lr=0.01, betas=(0.9, 0.99))))


def test_ademamix_warmups_match_the_reference():
    """The reference's alpha and beta3 warm-ups, ending inside the run (t_alpha=100, t_beta3=150)."""
    hyper = {"t_alpha": 100, "t_beta3": 150, "beta3": 0.999}
    got = run_dsl("ademamix", 0.01, 0.1, hyper=hyper)
    assert_same(got, run_formula(_ademamix(0.01, 0.1, b3=0.999, t_alpha=100, t_beta3=150)))
    Opt = dsl.to_optimizer(get_rule("ademamix"))
    assert_same(run_optimizer_class(Opt, 0.01, 0.1, hyper=hyper), got)


def test_lamb_and_lars_trust_ratio_is_one_at_zero_weights():
    """From w = 0 the trust ratio falls back to 1 (optax's safe ratio): the first step is the
    plain direction (LAMB: Adam's +-1 per element; LARS: lr * g), not 0 or nan."""
    g = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    w = torch.zeros(4, 3, dtype=F64)
    new, _ = run_rule(get_rule("lamb"), w, g, {}, lr=0.1, wd=0.0, step=1)
    torch.testing.assert_close(new, -0.1 * g / (g.abs() + 1e-6), rtol=1e-12, atol=0)
    new, _ = run_rule(get_rule("lars"), w, g, {}, lr=0.1, wd=0.0, step=1)
    torch.testing.assert_close(new, -0.1 * g, rtol=1e-12, atol=0)


def test_cautious_mask_drops_disagreeing_coordinates():
    """One step from a momentum that disagrees in sign with the gradient on some coordinates:
    exactly those coordinates do not move; the others move by the rescaled AdamW step."""
    g = torch.tensor([1.0, -2.0, 3.0, -4.0], dtype=F64)
    m0 = torch.tensor([-10.0, -1.0, 1.0, 10.0], dtype=F64)   # m = 0.9 m0 + 0.1 g: signs -,-,+,+
    w = torch.zeros(4, dtype=F64)
    new, st = run_rule(get_rule("cautious_adamw"), w, g, {"m": m0}, lr=1.0, wd=0.0, step=5)
    agree = (st["m"] * g > 0)
    assert agree.tolist() == [False, True, True, False]
    assert (new[~agree] == 0).all() and (new[agree] != 0).all()


def test_every_rule_has_a_reference():
    covered = set(TORCH_CASES) | set(FORMULA_CASES) | set(ZOO)
    assert set(list_rules()) == covered, set(list_rules()) ^ covered
    assert SHAPES  # the shared problem has 1-D, 2-D and 3-D parameters
