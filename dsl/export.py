"""``export_python(program, class_name) -> str``: a rule as a standalone, readable module.

The module depends only on torch (and math). It defines the DSL's primitives as small
documented functions, an ``update`` function whose body is the rule itself, one Python
line per DSL statement (scalars are 0-dim float64 tensors, so scalar math follows IEEE
rules as in the DSL: 1/0 = inf, sqrt(-1) = nan, never an exception), and a
``torch.optim.Optimizer`` subclass whose docstring is the rule's source.

The optimizer loops over parameters one at a time (readability first). Its constructor,
param groups and ``state_dict`` are those of ``dsl.to_optimizer``'s class for the same
rule: a checkpoint written by one loads into the other, and both follow the same
trajectory (up to rounding: the compiled class hoists constant factors).
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .compile import check_hyper_names, rule_program
from .primitives import NORM_EPS, NS_COEFFS, NS_STEPS, PRIMITIVES, ROW_EPS
from .program import BinOp, Call, Expr, Name, Neg, Num, Program, format_expr, walk

__all__ = ["export_python"]

_HELPERS: dict[str, str] = {
    "sign": '''def sign(x):
    """-1, 0 or 1, elementwise."""
    return torch.sign(_t(x))
''',
    "abs": '''def abs(x):
    """|x|, elementwise."""
    return torch.abs(_t(x))
''',
    "sqrt": '''def sqrt(x):
    """Square root, elementwise (nan below 0)."""
    return torch.sqrt(_t(x))
''',
    "square": '''def square(x):
    """x * x, elementwise."""
    x = _t(x)
    return x * x
''',
    "exp": '''def exp(x):
    return torch.exp(_t(x))
''',
    "log": '''def log(x):
    """Natural log, elementwise."""
    return torch.log(_t(x))
''',
    "tanh": '''def tanh(x):
    return torch.tanh(_t(x))
''',
    "clip": '''def clip(x, c):
    """x clamped to [-c, c]."""
    x, c = _t(x), _t(c)
    return torch.minimum(torch.maximum(x, -c), c)
''',
    "maximum": '''def maximum(x, y):
    return torch.maximum(_t(x), _t(y))
''',
    "minimum": '''def minimum(x, y):
    return torch.minimum(_t(x), _t(y))
''',
    "interp": '''def interp(x, y, a):
    """(1 - a) * x + a * y: a = 0 gives x, a = 1 gives y (the Lion paper's convention).

    On two tensors of the same shape this is torch.lerp(x, y, a) = x + a * (y - x).
    """
    x, y = _t(x), _t(y)
    if x.dim() > 0 and x.shape == y.shape and x.dtype == y.dtype and x.device == y.device:
        if not isinstance(a, torch.Tensor):
            return torch.lerp(x, y, float(a))
        if a.dim() == 0 and a.device.type == "cpu" and a.dtype == torch.float64:
            return torch.lerp(x, y, float(a))  # a scalar of the rule (a CPU number)
        return torch.lerp(x, y, a.to(x.dtype))
    return (1 - a) * x + a * y
''',
    "norm": '''def norm(x):
    """L2 norm of the whole tensor (a 0-dim tensor)."""
    return torch.linalg.vector_norm(_t(x))
''',
    "rms": '''def rms(x):
    """Root mean square of the whole tensor: norm(x) / sqrt(numel)."""
    x = _t(x)
    return torch.linalg.vector_norm(x) * x.numel() ** -0.5
''',
    "mean": '''def mean(x):
    """Mean of the whole tensor (a 0-dim tensor)."""
    return _t(x).mean()
''',
    "orthogonalize": f'''def orthogonalize(x):
    """Newton-Schulz orthogonalization as in Muon, on x viewed as shape[0] x rest.

    {NS_STEPS} quintic iterations X <- a X + (b A + c A^2) X with A = X X^T, starting from
    x / (||x||_F + {NORM_EPS!r}); the identity on tensors with fewer than 2 dimensions.
    """
    if x.dim() < 2:
        return x
    a, b, c = {NS_COEFFS[0]!r}, {NS_COEFFS[1]!r}, {NS_COEFFS[2]!r}
    X = x.reshape(x.shape[0], -1)
    X = X / (torch.linalg.matrix_norm(X) + {NORM_EPS!r})
    transposed = X.shape[0] > X.shape[1]
    if transposed:
        X = X.mT
    for _ in range({NS_STEPS}):
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    if transposed:
        X = X.mT
    return X.reshape(x.shape)
''',
    "row_normalize": f'''def row_normalize(x):
    """Each row of the shape[0] x rest view scaled to unit L2 norm (identity below 2-D)."""
    if x.dim() < 2:
        return x
    m = x.reshape(x.shape[0], -1)
    return (m / torch.linalg.vector_norm(m, dim=-1, keepdim=True).clamp_min({ROW_EPS!r})).reshape(x.shape)
''',
    "col_normalize": f'''def col_normalize(x):
    """Each column of the shape[0] x rest view scaled to unit L2 norm (identity below 2-D)."""
    if x.dim() < 2:
        return x
    m = x.reshape(x.shape[0], -1)
    return (m / torch.linalg.vector_norm(m, dim=-2, keepdim=True).clamp_min({ROW_EPS!r})).reshape(x.shape)
''',
}

_NP_BIN = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power}
_PY_BIN = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
           "/": lambda a, b: a / b, "**": lambda a, b: a ** b}


def _literal(e: Expr) -> bool:
    """Numbers combined by operators only: Python would evaluate these itself."""
    if isinstance(e, Num):
        return True
    if isinstance(e, Neg):
        return _literal(e.operand)
    if isinstance(e, BinOp):
        return _literal(e.left) and _literal(e.right)
    return False


def _eval(e: Expr, py: bool):
    if isinstance(e, Num):
        return float(e.value) if py else np.float64(e.value)
    if isinstance(e, Neg):
        return -_eval(e.operand, py)
    a, b = _eval(e.left, py), _eval(e.right, py)
    return _PY_BIN[e.op](a, b) if py else _NP_BIN[e.op](a, b)


def _number_text(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "(-inf)"
    s = repr(float(v))
    return f"({s})" if s.startswith("-") else s


def _floats(e: Expr) -> Expr:
    """Numbers printed as floats (``2.0``), so Python never does exact big-integer math."""
    if isinstance(e, Num):
        return Name(_number_text(e.value))
    if isinstance(e, Neg):
        return Neg(_floats(e.operand))
    if isinstance(e, BinOp):
        return BinOp(e.op, _floats(e.left), _floats(e.right))
    return e


def _python_safe(e: Expr, folded: set[str]) -> Expr:
    """Pure-number subexpressions that Python would raise on (1/0, 10.0**400, (-8)**0.5 ->
    complex) are folded to the DSL's float64 value (its text added to ``folded``); other
    pure-number ones print as floats."""
    if isinstance(e, BinOp) and _literal(e):
        with np.errstate(all="ignore"):
            want = float(_eval(e, py=False))
        try:
            got = _eval(e, py=True)
            ok = isinstance(got, float) and (got == want or (math.isnan(got) and math.isnan(want)))
        except (ArithmeticError, ValueError):
            ok = False
        if ok:
            return _floats(e)
        folded.add(_number_text(want))
        return Name(_number_text(want))
    if isinstance(e, BinOp):
        return BinOp(e.op, _python_safe(e.left, folded), _python_safe(e.right, folded))
    if isinstance(e, Neg):
        return Neg(_python_safe(e.operand, folded))
    if isinstance(e, Call):
        return Call(e.fn, tuple(_python_safe(a, folded) for a in e.args))
    return e


def _rename(e: Expr, names: dict[str, str]) -> Expr:
    if isinstance(e, Name):
        return Name(names.get(e.id, e.id))
    if isinstance(e, BinOp):
        return BinOp(e.op, _rename(e.left, names), _rename(e.right, names))
    if isinstance(e, Neg):
        return Neg(_rename(e.operand, names))
    if isinstance(e, Call):
        return Call(e.fn, tuple(_rename(a, names) for a in e.args))
    return e


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line if line else line for line in text.splitlines())


def _fingerprint(program: Program) -> str | None:
    from .compile import _fingerprint_of
    return _fingerprint_of(program)


def export_python(program: Program | str, class_name: str) -> str:
    """Source text of a standalone module defining ``class_name`` (see the module docstring)."""
    program = rule_program(program)
    check_hyper_names(program)
    if not class_name.isidentifier() or class_name in ("torch", "math", "update") or class_name.startswith("_"):
        raise ValueError(f"class_name {class_name!r} must be a Python identifier (not torch, math, update "
                         "or a name starting with '_')")
    source = program.source()
    hyper = program.hyperparams
    states = program.state_names

    bad = sorted(h for h in hyper if h in ("defaults", "FINGERPRINT", "RULE", "super") or h.startswith("__"))
    if bad:
        raise ValueError(f"cannot export: hyperparameter name(s) {', '.join(bad)} would shadow names the "
                         "exported constructor uses; rename them")

    # rule names that would shadow the constants inf/nan of the module get a trailing underscore
    all_names = set(program.arg_names) | {s.target for s in program.body}
    rename: dict[str, str] = {}
    for n in ("inf", "nan"):
        if n in all_names:
            new = n + "_"
            while new in all_names:
                new += "_"
            rename[n] = new
    r = lambda n: rename.get(n, n)  # noqa: E731
    # the body of update(): the rule's statements, made safe for Python's own number rules
    folded: set[str] = set()
    body = [(r(s.target), _python_safe(_rename(s.value, rename), folded)) for s in program.body]
    used_fns = sorted({n.fn for _, v in body for n in walk(v) if isinstance(n, Call)},
                      key=list(PRIMITIVES).index)
    needs = {c for c in ("inf", "nan") if any(c in f for f in folded)}

    sig = ", ".join(r(a.name) for a in program.args)
    lines = [f"    {t} = {format_expr(v)}" for t, v in body]
    ret = ", ".join(r(n) for n in program.returns)
    scalar_inputs = [a.name for a in program.args if a.name in ("lr", "wd", "step") or a.default is not None]
    group_key = {"lr": 'group["lr"]', "wd": 'group["weight_decay"]', "step": "step"}
    scalar_items = "".join(f'\n                        "{r(n)}": _t({group_key.get(n, f"group[{n!r}]")}),'
                           for n in scalar_inputs)
    if scalar_items:
        scalar_items += "\n                    "
    tensor_args = ", ".join([f"{r('w')}=p", f"{r('g')}=p.grad"] + [f'{r(s)}=state["{s}"]' for s in states])
    fp = _fingerprint(program)

    init_sig = ", ".join(["self", "params", "lr=1e-3", "weight_decay=0.0"]
                         + [f"{h}={v!r}" for h, v in hyper.items()])
    defaults_items = ", ".join(['"lr": lr', '"weight_decay": weight_decay'] + [f'"{h}": {h}' for h in hyper]
                               + ['"rule": RULE'])
    rule_block = _indent(source.rstrip("\n"), 4)
    state_list = ", ".join(states) if states else "none"
    init_states = "".join(f'\n                    state["{s}"] = torch.zeros_like(p, memory_format=torch.preserve_format)'
                          for s in states)
    buffers = ", ".join(["p"] + [f'state["{s}"]' for s in states]) + ("," if not states else "")
    consts = ""
    if needs:
        consts = "".join(f"{c} = math.{c}\n" for c in sorted(needs)) + "\n"
    helpers = "\n\n".join(_HELPERS[f] for f in used_fns)
    if helpers:
        helpers = "\n\n" + helpers

    text = f'''"""{class_name}: a torch.optim optimizer exported by optforge from this update rule:

{rule_block}

Read it as Python: w is the parameter, g its gradient, lr and wd the group's learning
rate and weight decay, step counts updates from 1, the state tensors ({state_list}) start
at zero, and interp(x, y, a) = (1 - a) * x + a * y.

This file depends only on torch. ``{class_name}(params, lr=..., weight_decay=..., ...)`` works
like any torch.optim optimizer: param groups, closures, LR schedulers, state_dict (per
parameter: ``step`` and the state tensors by name; hyperparameters in param_groups).
"""
{"import math" + chr(10) + chr(10) if needs else ""}import torch

RULE = {source!r}
FINGERPRINT = {fp!r}  # optforge's functional hash of the rule
HYPERPARAMETERS = {dict(hyper)!r}
STATE = {tuple(states)!r}

{consts}
def _t(x):
    """Numbers as 0-dim float64 tensors: scalar math then follows IEEE rules (1/0 = inf)."""
    return x if isinstance(x, torch.Tensor) else torch.tensor(float(x), dtype=torch.float64)
{helpers}

def update({sig}):
    """One step of the rule for one parameter tensor; returns the new ({ret}).

    Scalars (lr, wd, step, hyperparameters) are 0-dim float64 tensors. Nothing is
    modified in place.
    """
{chr(10).join(lines)}
    return {ret}


def _write_back(buffers, values):
    """Copy each new value into its buffer, in place (cloning first any value that is
    itself one of the buffers, so that no copy reads an already overwritten buffer)."""
    values = [v.clone() if any(v is b for b in buffers) and v is not b0 else v
              for v, b0 in zip(values, buffers)]
    for b, v in zip(buffers, values):
        if v is not b:
            b.copy_(v)


def _step_dtype():
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class {class_name}(torch.optim.Optimizer):
    """{class_name}, the update rule:

{rule_block}
    """

    def __init__({init_sig}):
        defaults = {{{defaults_items}}}
        if FINGERPRINT is not None:
            defaults["fingerprint"] = FINGERPRINT
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            scalars = {{}}  # per step count: the rule's scalar inputs
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("{class_name} does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0, dtype=_step_dtype()){init_states}
                state["step"] += 1
                step = float(state["step"])
                if step not in scalars:
                    scalars[step] = {{{scalar_items}}}
                new = update({tensor_args}, **scalars[step])
                _write_back(({buffers}), new if isinstance(new, tuple) else (new,))
        return loss
'''
    return text
