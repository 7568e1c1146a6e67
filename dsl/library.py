"""Known update rules written in the DSL: seeds for the search and tests of the language.

Each rule follows its reference exactly (tests/test_library.py checks a few
hundred float64 steps against it):

* torch.optim semantics for SGD (momentum, dampening 0, Nesterov), Adam, AdamW,
  RMSprop (alpha 0.99, eps 1e-8, no momentum, not centered) and Adagrad
  (eps 1e-10, lr_decay 0, initial accumulator 0). torch's L2 weight decay adds
  ``wd * w`` to the gradient; AdamW's decoupled decay multiplies ``w`` by
  ``1 - lr * wd`` first. A zero initial momentum buffer gives torch's
  "first step copies the gradient" for free when dampening is 0.
* the papers' formulas for Lion (Chen et al. 2023), signSGD and signum
  (Bernstein et al. 2018; here with Lion-style decoupled weight decay),
  AdaBelief (Zhuang et al. 2020: ``s`` tracks ``(g - m)^2 + eps``, bias
  corrected, decoupled weight decay, eps 1e-16 as in its reference code) and
  Muon (Jordan et al. 2024: momentum, Nesterov look-ahead, Newton-Schulz
  orthogonalization, decoupled weight decay). ``orthogonalize`` is the
  identity on 1-D tensors, where this rule is SGD with Nesterov momentum.
* ``muon_scaled``: Muon with the shape factor later Muon versions apply,
  ``sqrt(max(1, rows / cols))`` for the ``rows x cols`` view of the update.
  The DSL has no shape primitive (and this library adds none); the factor is
  computed from an exact identity over existing primitives instead: for a
  tensor of ones, ``row_normalize`` makes each of the ``rows`` rows unit-norm,
  so ``norm(row_normalize(ones)) = sqrt(rows)``, and likewise
  ``norm(col_normalize(ones)) = sqrt(cols)`` (to rounding: a few ulps). On
  1-D tensors both primitives are the identity and the factor is 1. ``ones``
  is ``0 * g + 1``, which is nan where ``g`` is already non-finite (the update
  is nan there anyway). It costs a few extra passes per matrix per step, small
  next to the Newton-Schulz matrix products. The plain ``muon`` rule leaves the
  factor out (it can be folded into a per-shape learning rate).

Recall ``interp(x, y, a) = (1 - a) * x + a * y``, so torch's
``m = beta * m + (1 - beta) * g`` is ``interp(g, m, beta)``.
"""
from __future__ import annotations

from functools import cache

from .discovered import DISCOVERED
from .parser import parse
from .program import Program
from .zoo import ZOO_RANGES, ZOO_RULES
from .zoo_shaped import SHAPED_RANGES, SHAPED_RULES

RULES: dict[str, str] = {
    "sgd": """\
def sgd(w, g, lr, wd):
    g = g + wd * w
    w = w - lr * g
    return w
""",
    "sgd_momentum": """\
def sgd_momentum(w, g, buf, lr, wd, momentum=0.9):
    d = g + wd * w
    buf = momentum * buf + d
    w = w - lr * buf
    return w, buf
""",
    "nesterov": """\
def nesterov(w, g, buf, lr, wd, momentum=0.9):
    d = g + wd * w
    buf = momentum * buf + d
    w = w - lr * (d + momentum * buf)
    return w, buf
""",
    "adam": """\
def adam(w, g, m, v, lr, wd, step, beta1=0.9, beta2=0.999, eps=1e-8):
    g = g + wd * w
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    u = m / (1 - beta1 ** step) / (sqrt(v) / sqrt(1 - beta2 ** step) + eps)
    w = w - lr * u
    return w, m, v
""",
    "adamw": """\
def adamw(w, g, m, v, lr, wd, step, beta1=0.9, beta2=0.999, eps=1e-8):
    w = w * (1 - lr * wd)
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    u = (m / (1 - beta1 ** step)) / (sqrt(v / (1 - beta2 ** step)) + eps)
    w = w - lr * u
    return w, m, v
""",
    "rmsprop": """\
def rmsprop(w, g, v, lr, wd, alpha=0.99, eps=1e-8):
    g = g + wd * w
    v = interp(g * g, v, alpha)
    w = w - lr * g / (sqrt(v) + eps)
    return w, v
""",
    "adagrad": """\
def adagrad(w, g, s, lr, wd, step, lr_decay=0, eps=1e-10):
    g = g + wd * w
    s = s + g * g
    w = w - lr / (1 + (step - 1) * lr_decay) * g / (sqrt(s) + eps)
    return w, s
""",
    "lion": """\
def lion(w, g, m, lr, wd, beta1=0.9, beta2=0.99):
    u = sign(interp(g, m, beta1))
    m = interp(g, m, beta2)
    w = w - lr * (u + wd * w)
    return w, m
""",
    "signsgd": """\
def signsgd(w, g, lr, wd):
    w = w - lr * (sign(g) + wd * w)
    return w
""",
    "signum": """\
def signum(w, g, m, lr, wd, beta=0.9):
    m = interp(g, m, beta)
    w = w - lr * (sign(m) + wd * w)
    return w, m
""",
    "adabelief": """\
def adabelief(w, g, m, s, lr, wd, step, beta1=0.9, beta2=0.999, eps=1e-16):
    w = w * (1 - lr * wd)
    m = interp(g, m, beta1)
    s = interp(square(g - m), s, beta2) + eps
    u = m / (1 - beta1 ** step) / (sqrt(s / (1 - beta2 ** step)) + eps)
    w = w - lr * u
    return w, m, s
""",
    "muon": """\
def muon(w, g, buf, lr, wd, momentum=0.95):
    w = w * (1 - lr * wd)
    buf = interp(g, buf, momentum)
    u = orthogonalize(interp(g, buf, momentum))
    w = w - lr * u
    return w, buf
""",
    "muon_scaled": """\
def muon_scaled(w, g, buf, lr, wd, momentum=0.95):
    w = w * (1 - lr * wd)
    buf = interp(g, buf, momentum)
    u = orthogonalize(interp(g, buf, momentum))
    ones = 0 * g + 1
    scale = maximum(1, norm(row_normalize(ones)) / norm(col_normalize(ones)))
    w = w - lr * scale * u
    return w, buf
""",
}


#: The hyperparameter ranges each rule declares (interval notation; see dsl.ranges). torch's
#: checks where torch has the rule (betas in [0, 1), eps >= 0, lr_decay >= 0); momentum in
#: [0, 1) (torch only asks >= 0: at 1 and above the buffer grows without bound); Lion's betas
#: in [0, 1] as in the paper's code; RMSprop's alpha in [0, 1] (an average's weight).
RANGES: dict[str, dict[str, str]] = {
    "sgd": {},
    "sgd_momentum": {"momentum": "[0, 1)"},
    "nesterov": {"momentum": "[0, 1)"},
    "adam": {"beta1": "[0, 1)", "beta2": "[0, 1)", "eps": "[0, inf)"},
    "adamw": {"beta1": "[0, 1)", "beta2": "[0, 1)", "eps": "[0, inf)"},
    "rmsprop": {"alpha": "[0, 1]", "eps": "[0, inf)"},
    "adagrad": {"lr_decay": "[0, inf)", "eps": "[0, inf)"},
    "lion": {"beta1": "[0, 1]", "beta2": "[0, 1]"},
    "signsgd": {},
    "signum": {"beta": "[0, 1)"},
    "adabelief": {"beta1": "[0, 1)", "beta2": "[0, 1)", "eps": "[0, inf)"},
    "muon": {"momentum": "[0, 1)"},
    "muon_scaled": {"momentum": "[0, 1)"},
}

# the modern optimizer zoo (dsl.zoo: each rule's reference and what it takes to match it)
RULES.update(ZOO_RULES)
RANGES.update(ZOO_RANGES)
RULES.update(SHAPED_RULES)
RANGES.update(SHAPED_RANGES)


def list_rules() -> list[str]:
    """Names of the library rules, in a stable order."""
    return list(RULES)


@cache
def get_rule(name: str) -> Program:
    """The parsed library rule; ``KeyError`` naming the known rules otherwise."""
    if name not in RULES:
        if name in DISCOVERED:   # rules found by optforge's campaigns (dsl.discovered)
            return parse(DISCOVERED[name])
        found = f"; discovered: {', '.join(DISCOVERED)}" if DISCOVERED else ""
        raise KeyError(f"unknown library rule {name!r}; known rules: {', '.join(RULES)}{found}")
    return parse(RULES[name])


@cache
def _by_source() -> dict[str, str]:
    return {get_rule(name).source(): name for name in RULES}


def library_name(program: Program) -> str | None:
    """The library rule whose canonical source ``program`` has, or None."""
    return _by_source().get(program.source())


__all__ = ["RULES", "RANGES", "get_rule", "list_rules", "library_name"]
