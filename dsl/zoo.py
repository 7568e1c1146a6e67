"""The modern optimizer zoo as DSL rules (merged into ``dsl.library``).

Each rule reproduces one named reference at that reference's defaults, weight-decay
semantics included; tests/test_library_zoo.py runs a few hundred float64 steps of the
interpreter, the compiled optimizer and the exported module against it. Where the match is
not exact the rule's note below says what differs and the test asserts the measured bound.

* ``adamax``, ``nadam``, ``radam``: torch.optim's classes (L2 weight decay added to the
  gradient, their default). NAdam's running product of the momentum schedule
  ``mu_t = beta1 (1 - 0.5 * 0.96^(t psi))`` is a scalar the language can only carry as a
  state tensor: ``q = 1 - prod(mu)`` (zero at the start, as states are), so that
  ``1 - mu_prod`` is ``q`` itself. RAdam's branch ``rho_t > 5`` is the 0/1 indicator
  ``maximum(sign(rho_t - 5), 0)``; the rectification term under it is clamped at 0 so the
  unused branch stays finite.
* ``lamb``: optax's ``lamb`` (You et al. 2019, Algorithm 2): the Adam direction (eps added
  to the bias-corrected root, eps 1e-6) plus ``wd * w``, scaled by the trust ratio
  ``norm(w) / norm(u)``, which is 1 when either norm is 0 (``z = sign(norm(w) norm(u))``
  selects). ``lars``: optax's ``lars``: ``d = g + wd w``, trust ratio
  ``trust * norm(w) / norm(d)`` (1 when a norm is 0), heavy-ball momentum on
  ``lr * ratio * d`` (optax's ``trace`` after the learning rate).
* ``cautious_adamw``: C-Optim's ``c_adamw.py`` (Liang et al. 2024; the loop form):
  transformers-style AdamW (eps 1e-6 added to the uncorrected root, step size
  ``lr sqrt(1 - beta2^t) / (1 - beta1^t)``, decay ``w (1 - lr wd)`` first) with the update
  masked where momentum and gradient disagree in sign, the mask divided by
  ``max(mean(mask), 1e-3)``. ``[x > 0]`` is ``maximum(sign(x), 0)``, exactly 0 or 1.
* ``mars``: MARS-AdamW (Yuan et al. 2024), the single-gradient ("approximate") form of the
  official ``MARS/optimizers/mars.py`` with ``optimize_1d=True`` (MARS on every tensor):
  ``c = g + gamma beta1 / (1 - beta1) (g - g_prev)``, ``c / max(norm(c), 1)``, Adam on
  ``c``, decay folded into the step ``w - lr (wd w + u)``. The reference's default hybrid
  (AdamW with its own betas for 1-D tensors) needs to know the tensor's rank.
* ``ademamix``: apple/ml-ademamix's PyTorch AdEMAMix (Pagliardini et al. 2024): fast EMA
  ``m1`` (bias-corrected), slow EMA ``m2`` (not corrected), ``u = (m1^ + alpha m2) /
  (sqrt(v^) + eps) + wd w``. The optional warm-ups are the reference's: ``alpha_t`` linear
  over ``t_alpha`` steps; ``beta3_t`` linear in half-life from ``beta1`` to ``beta3`` over
  ``t_beta3`` steps (``f(b) = log(0.5) / log(b + 1e-8) - 1``, ``beta3_t = 0.5^(1 / (f + 1))``),
  ``beta3`` itself from step ``t_beta3`` on. 0 (the default) means no warm-up, as the
  reference's ``None``: ``step / 0`` is inf and ``minimum(inf, 1)`` is 1.
* ``exadam``: the official EXAdam code (Adly 2024): cross-moment factors
  ``d1 = 1 + v / (v + eps) beta2^t``, ``d2 = 1 + m^2 / (m^2 + eps) beta1^t`` on the
  corrected moments, the corrected gradient added to the numerator, decoupled decay first.
"""
from __future__ import annotations

ZOO_RULES: dict[str, str] = {
    "adamax": """\
def adamax(w, g, m, u, lr, wd, step, beta1=0.9, beta2=0.999, eps=1e-8):
    g = g + wd * w
    m = interp(g, m, beta1)
    u = maximum(beta2 * u, abs(g) + eps)
    w = w - lr / (1 - beta1 ** step) * (m / u)
    return w, m, u
""",
    "nadam": """\
def nadam(w, g, m, v, q, lr, wd, step, beta1=0.9, beta2=0.999, eps=1e-8, momentum_decay=0.004):
    g = g + wd * w
    mu = beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))
    mu_next = beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
    q = 1 - (1 - q) * mu
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    d = sqrt(v / (1 - beta2 ** step)) + eps
    w = w - lr * (1 - mu) / q * (g / d) - lr * mu_next / (1 - (1 - q) * mu_next) * (m / d)
    return w, m, v, q
""",
    "radam": """\
def radam(w, g, m, v, lr, wd, step, beta1=0.9, beta2=0.999, eps=1e-8):
    g = g + wd * w
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    rho_inf = 2 / (1 - beta2) - 1
    rho = rho_inf - 2 * step * beta2 ** step / (1 - beta2 ** step)
    on = maximum(sign(rho - 5), 0)
    rect = sqrt(maximum((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho), 0))
    adapt = sqrt(1 - beta2 ** step) / (sqrt(v) + eps)
    w = w - lr * (m / (1 - beta1 ** step)) * (on * rect * adapt + (1 - on))
    return w, m, v
""",
    "lamb": """\
def lamb(w, g, m, v, lr, wd, step, beta1=0.9, beta2=0.999, eps=1e-6):
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    u = m / (1 - beta1 ** step) / (sqrt(v / (1 - beta2 ** step)) + eps) + wd * w
    nw = norm(w)
    nu = norm(u)
    z = sign(nw * nu)
    w = w - lr * (z * nw / (nu + 1 - z) + 1 - z) * u
    return w, m, v
""",
    "lars": """\
def lars(w, g, buf, lr, wd, momentum=0.9, trust=0.001):
    d = g + wd * w
    nw = norm(w)
    nd = norm(d)
    z = sign(nw * nd)
    buf = momentum * buf + lr * (z * trust * nw / (nd + 1 - z) + 1 - z) * d
    w = w - buf
    return w, buf
""",
    "cautious_adamw": """\
def cautious_adamw(w, g, m, v, lr, wd, step, beta1=0.9, beta2=0.999, eps=1e-6):
    w = w * (1 - lr * wd)
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    mask = maximum(sign(m * g), 0)
    mask = mask / maximum(mean(mask), 0.001)
    w = w - lr * sqrt(1 - beta2 ** step) / (1 - beta1 ** step) * (m * mask / (sqrt(v) + eps))
    return w, m, v
""",
    "mars": """\
def mars(w, g, m, v, g_prev, lr, wd, step, beta1=0.95, beta2=0.99, gamma=0.025, eps=1e-8):
    c = g + gamma * beta1 / (1 - beta1) * (g - g_prev)
    c = c / maximum(norm(c), 1)
    m = interp(c, m, beta1)
    v = interp(c * c, v, beta2)
    u = m / ((sqrt(v) / sqrt(1 - beta2 ** step) + eps) * (1 - beta1 ** step))
    w = w - lr * (wd * w + u)
    g_prev = g
    return w, m, v, g_prev
""",
    "ademamix": """\
def ademamix(w, g, m1, m2, v, lr, wd, step, beta1=0.9, beta2=0.999, beta3=0.9999, alpha=2.0, eps=1e-8,
             t_alpha=0, t_beta3=0):
    a = alpha * minimum(step / t_alpha, 1)
    s = minimum(step / t_beta3, 1)
    half = (1 - s) * (log(0.5) / log(beta1 + 1e-8) - 1) + s * (log(0.5) / log(beta3 + 1e-8) - 1)
    on = maximum(sign(t_beta3 - step), 0)
    b3 = on * 0.5 ** (1 / (half + 1)) + (1 - on) * beta3
    m1 = interp(g, m1, beta1)
    m2 = interp(g, m2, b3)
    v = interp(g * g, v, beta2)
    u = (m1 / (1 - beta1 ** step) + a * m2) / (sqrt(v) / sqrt(1 - beta2 ** step) + eps)
    w = w - lr * (u + wd * w)
    return w, m1, m2, v
""",
    "exadam": """\
def exadam(w, g, m, v, lr, wd, step, beta1=0.9, beta2=0.999, eps=1e-8):
    w = w * (1 - lr * wd)
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    d1 = 1 + v / (v + eps) * beta2 ** step
    d2 = 1 + m * m / (m * m + eps) * beta1 ** step
    u = (m + g) / (1 - beta1 ** step) * d1 / (sqrt(v / (1 - beta2 ** step) * d2) + eps)
    w = w - lr * u
    return w, m, v
""",
}

_ADAM = {"beta1": "[0, 1)", "beta2": "[0, 1)", "eps": "[0, inf)"}

#: declared hyperparameter ranges (dsl.ranges): the references' own checks where they have them.
ZOO_RANGES: dict[str, dict[str, str]] = {
    "adamax": dict(_ADAM),
    "nadam": {**_ADAM, "momentum_decay": "[0, inf)"},
    "radam": dict(_ADAM),
    "lamb": dict(_ADAM),
    "lars": {"momentum": "[0, 1)", "trust": "[0, inf)"},
    "cautious_adamw": dict(_ADAM),
    "mars": {**_ADAM, "gamma": "[0, inf)"},
    "ademamix": {**_ADAM, "beta3": "[0, 1)", "alpha": "[0, inf)", "t_alpha": "[0, inf)",
                 "t_beta3": "[0, inf)"},
    "exadam": dict(_ADAM),
}

__all__ = ["ZOO_RULES", "ZOO_RANGES"]
