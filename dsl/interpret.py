"""Reference interpreter: runs a Program on tensors, one parameter tensor at a time.

It is the semantic definition the compiled optimizers are tested against, and
the update used by the vectorized evaluator, where K model copies are stacked
along ``batch_dims`` leading dimensions: reductions and matrix primitives then
act per copy, and any scalar input may be a tensor of shape ``[K]`` (one value
per copy, e.g. a learning-rate sweep).

Scalars that depend only on numbers are numpy float64, so 1/0, log(-1) and
overflow give inf/nan like tensors do instead of raising.
"""
from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from . import shaped
from .kinds import extensions
from .primitives import NORM_EPS, NS_COEFFS, NS_STEPS, PRIMITIVES, ROLE_INPUTS, ROW_EPS
from .program import BinOp, Call, Expr, Name, Neg, Num, Program

Value = "torch.Tensor | np.float64"


def _is_t(x) -> bool:
    return isinstance(x, torch.Tensor)


def _lift(x):
    """numpy scalars as plain floats next to tensors."""
    return float(x) if isinstance(x, np.floating) else x


def binop(op: str, a, b):
    if not (_is_t(a) or _is_t(b)):
        with np.errstate(all="ignore"):
            a, b = np.float64(a), np.float64(b)
            return {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide,
                    "**": np.power}[op](a, b)
    a, b = _lift(a), _lift(b)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b
    if not _is_t(a):  # scalar ** tensor
        return torch.pow(torch.as_tensor(a, dtype=b.dtype, device=b.device), b)
    return torch.pow(a, b)


def _reduce_dims(x: torch.Tensor, batch_dims: int) -> tuple[int, ...]:
    return tuple(range(batch_dims, x.dim()))


def _matrix_view(x: torch.Tensor, batch_dims: int) -> torch.Tensor | None:
    """x as (*batch, shape[0], rest), or None when the parameter is < 2-D."""
    if x.dim() - batch_dims < 2:
        return None
    return x.reshape(*x.shape[:batch_dims], x.shape[batch_dims], -1)


def newton_schulz(x: torch.Tensor) -> torch.Tensor:
    """Muon's quintic Newton-Schulz iteration on a batch of matrices (..., r, c)."""
    a, b, c = NS_COEFFS
    X = x / (torch.linalg.matrix_norm(x, keepdim=True) + NORM_EPS)
    transposed = X.shape[-2] > X.shape[-1]
    if transposed:
        X = X.mT
    for _ in range(NS_STEPS):
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.mT if transposed else X


_square = lambda x: x * x
# one-argument primitives on a number (numpy float64: inf/nan instead of exceptions); a reduction
# of a number is the number itself (norm and rms: its absolute value)
_NP_ONE = {"sign": np.sign, "abs": np.abs, "norm": np.abs, "rms": np.abs, "mean": lambda x: x,
           "max_of": lambda x: x, "min_of": lambda x: x,
           "sqrt": np.sqrt, "square": _square, "exp": np.exp, "log": np.log, "tanh": np.tanh}
# the elementwise one-argument primitives on a tensor
_TORCH_ONE = {"sign": torch.sign, "abs": torch.abs, "sqrt": torch.sqrt, "square": _square, "exp": torch.exp,
              "log": torch.log, "tanh": torch.tanh}


def call(fn: str, args: list, batch_dims: int = 0):
    if not any(_is_t(a) for a in args):  # pure scalar function
        with np.errstate(all="ignore"):
            x = np.float64(args[0])
            if fn in _NP_ONE:
                return _NP_ONE[fn](x)
            y = np.float64(args[1]) if len(args) > 1 else None
            if fn == "clip":
                return np.minimum(np.maximum(x, -y), y)
            if fn == "maximum":
                return np.maximum(x, y)
            if fn == "minimum":
                return np.minimum(x, y)
            if fn == "interp":
                a = np.float64(args[2])
                return (1 - a) * x + a * y
            raise ValueError(f"{fn}() needs a tensor argument")
    args = [_lift(a) for a in args]
    ref = next(a for a in args if _is_t(a))
    x = args[0] if _is_t(args[0]) else torch.full_like(ref, args[0])
    if fn in _TORCH_ONE:
        return _TORCH_ONE[fn](x)
    if fn == "clip":
        c = args[1]
        if _is_t(c):
            return torch.minimum(torch.maximum(x, -c), c)
        return torch.clamp(x, -c, c)
    if fn in ("maximum", "minimum"):
        y = args[1] if _is_t(args[1]) else torch.full_like(x, args[1])
        return torch.maximum(x, y) if fn == "maximum" else torch.minimum(x, y)
    if fn == "interp":
        y, a = args[1], args[2]
        return (1 - a) * x + a * y
    dims = _reduce_dims(x, batch_dims)
    if fn in ("max_of", "min_of"):
        if not dims:
            return x
        return x.amax(dim=dims, keepdim=True) if fn == "max_of" else x.amin(dim=dims, keepdim=True)
    if fn == "norm":
        return torch.linalg.vector_norm(x, dim=dims, keepdim=True) if dims else x.abs()
    if fn == "rms":
        return x.square().mean(dim=dims, keepdim=True).sqrt() if dims else x.abs()
    if fn == "mean":
        return x.mean(dim=dims, keepdim=True) if dims else x
    m = _matrix_view(x, batch_dims)
    if m is None:
        return x
    if fn == "orthogonalize":
        return newton_schulz(m).reshape(x.shape)
    if fn == "row_normalize":
        return (m / torch.linalg.vector_norm(m, dim=-1, keepdim=True).clamp_min(ROW_EPS)).reshape(x.shape)
    if fn == "col_normalize":
        return (m / torch.linalg.vector_norm(m, dim=-2, keepdim=True).clamp_min(ROW_EPS)).reshape(x.shape)
    raise ValueError(f"unknown function {fn}")


def eval_expr(e: Expr, env: Mapping, batch_dims: int = 0):
    if isinstance(e, Num):
        return np.float64(e.value)
    if isinstance(e, Name):
        return env[e.id]
    if isinstance(e, Neg):
        v = eval_expr(e.operand, env, batch_dims)
        return -v
    if isinstance(e, BinOp):
        return binop(e.op, eval_expr(e.left, env, batch_dims), eval_expr(e.right, env, batch_dims))
    if isinstance(e, Call):
        return call(e.fn, [eval_expr(a, env, batch_dims) for a in e.args], batch_dims)
    raise TypeError(type(e))


def _per_copy(x, w: torch.Tensor, batch_dims: int):
    """A per-copy scalar input ([K] tensor) reshaped to broadcast against w."""
    if _is_t(x) and batch_dims and x.dim() >= 1 and x.dim() < w.dim():
        return x.to(w.dtype).reshape(*x.shape, *([1] * (w.dim() - x.dim())))
    if _is_t(x):
        return x.to(w.dtype)
    return np.float64(x)


def run_rule(program: Program, w: torch.Tensor, g: torch.Tensor, state: Mapping[str, torch.Tensor],
             lr=1e-3, wd=0.0, step: int = 1, hyper: Mapping[str, float] | None = None,
             batch_dims: int = 0, role: str | None = None,
             global_norms: Mapping[str, object] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One update of one parameter tensor; returns (new w, new state). Inputs are not modified.

    ``state`` maps each state name to a tensor shaped like w (missing ones are zero).
    ``hyper`` overrides the program's default hyperparameters.

    Rules using shapes (``dsl.kinds.extensions``) run on the m x n view (``run_shaped``);
    ``role`` (matrix, embedding, head, vector; None: by dimension) and ``global_norms`` (the
    group-wide norm of ``g``/``w`` by name; missing: this tensor's own norm) apply to them.
    """
    if _layout(program).extended:
        return run_shaped(program, w, g, state, lr, wd, step, hyper, batch_dims, role, global_norms)
    env: dict = {"w": w, "g": g, "step": np.float64(step)}
    env["lr"] = _per_copy(lr, w, batch_dims)
    env["wd"] = _per_copy(wd, w, batch_dims)
    hp = dict(program.hyperparams)
    hp.update(hyper or {})
    for k, v in hp.items():
        env[k] = _per_copy(v, w, batch_dims)
    for s in program.state_names:
        env[s] = state[s] if s in state else torch.zeros_like(w)
    for st in program.body:
        env[st.target] = eval_expr(st.value, env, batch_dims)
    outs = []
    for nm in program.returns:
        v = env[nm]
        if not _is_t(v) or v.shape != w.shape:
            v = torch.broadcast_to(torch.as_tensor(_lift(v), dtype=w.dtype, device=w.device), w.shape).clone()
        outs.append(v.to(w.dtype))
    return outs[0], dict(zip(program.state_names, outs[1:]))


@dataclass(frozen=True)
class _Layout:
    """What run_rule needs to know about a program, computed once per Program object (hashing a
    program walks its whole tree: too slow for every parameter of every step)."""
    extended: bool
    hyperparams: dict
    state_kinds: dict
    state_inits: dict


_LAYOUTS: dict[int, tuple[weakref.ref, _Layout]] = {}


def _layout(program: Program) -> _Layout:
    hit = _LAYOUTS.get(id(program))
    if hit is not None and hit[0]() is program:
        return hit[1]
    lay = _Layout(bool(extensions(program)), dict(program.hyperparams), program.state_kinds, program.state_inits)
    if len(_LAYOUTS) > 4096:
        _LAYOUTS.clear()
    _LAYOUTS[id(program)] = (weakref.ref(program), lay)
    return lay


_SHAPED_FNS = {p.name for p in PRIMITIVES.values() if p.kind in ("shape", "axis", "linalg")}
_MATRIX_FNS = {p.name for p in PRIMITIVES.values() if p.kind == "matrix"}


def _due(step, k):
    """refresh's condition: a bool, or a per-copy boolean mask when k is a per-copy tensor."""
    if not _is_t(k) or k.numel() == 1:
        return shaped.due(step, float(k))
    kk = torch.nan_to_num(k.double(), nan=float("inf")).round().clamp_min(1)
    mask = torch.remainder(torch.as_tensor(float(step) - 1, dtype=torch.float64), kk) == 0
    return torch.where(torch.isfinite(kk), mask, torch.as_tensor(float(step) == 1))


def run_shaped(program: Program, w: torch.Tensor, g: torch.Tensor, state: Mapping[str, torch.Tensor],
               lr=1e-3, wd=0.0, step: int = 1, hyper: Mapping[str, float] | None = None, batch_dims: int = 0,
               role: str | None = None, global_norms: Mapping[str, object] | None = None,
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``run_rule`` for rules using shapes: every tensor on the (*batch, m, n) view (``dsl.shaped``).

    Elementwise primitives and whole-tensor reductions compute exactly what they compute on the
    parameter's own shape; orthogonalize, row_normalize and col_normalize stay the identity on
    parameters below 2-D; ``refresh`` evaluates only the branch it returns (both, under a per-copy
    period, joined by torch.where)."""
    bd = batch_dims
    pdim = w.dim() - bd
    W2 = shaped.to_view(w, bd)
    def scalar(x):  # as exported modules hold them: 0-dim float64 tensors (or per-copy tensors)
        return _per_copy(x, W2, bd) if _is_t(x) else torch.tensor(float(x), dtype=torch.float64)

    env: dict = {"w": W2, "g": shaped.to_view(g, bd), "step": scalar(step)}
    env["lr"] = scalar(lr)
    env["wd"] = scalar(wd)
    lay = _layout(program)
    hp = dict(lay.hyperparams)
    hp.update(hyper or {})
    for k, v in hp.items():
        env[k] = scalar(v)
    for name, flag in zip(ROLE_INPUTS, shaped.role_flags(role, pdim)):
        env[name] = scalar(flag)
    inputs = {"g": env["g"], "w": W2}  # global_norm reads the inputs as they came in

    def group_norm(nm: str):
        given = (global_norms or {}).get(nm)
        if given is None:  # a group of one: this tensor's own norm
            return torch.linalg.vector_norm(inputs[nm], dim=(-2, -1), keepdim=True)
        return _per_copy(given, W2, bd)

    kinds, inits = lay.state_kinds, lay.state_inits
    stored = {}
    for s in program.state_names:
        st = state.get(s)
        if st is None:
            st = shaped.new_state(kinds[s], inits[s], w, bd)
        stored[s] = st
        env[s] = shaped.state_to_view(st, kinds[s], bd)

    def ev(e: Expr):
        if isinstance(e, Num):
            return np.float64(e.value)
        if isinstance(e, Name):
            return env[e.id]
        if isinstance(e, Neg):
            return -ev(e.operand)
        if isinstance(e, BinOp):
            return binop(e.op, ev(e.left), ev(e.right))
        fn = e.fn
        if fn == "refresh":
            due = _due(step, ev(e.args[0]))
            if isinstance(due, bool):
                return ev(e.args[1] if due else e.args[2])
            # a per-copy period ((*batch, 1, 1), from _per_copy): both branches, chosen per copy
            new, old = (torch.as_tensor(_lift(ev(a)), dtype=W2.dtype) for a in e.args[1:])
            return torch.where(due, new, old)
        if fn == "global_norm":
            return group_norm(e.args[0].id)
        args = [ev(a) for a in e.args]
        if fn in _SHAPED_FNS:
            out = getattr(shaped, fn)(*[_lift(a) for a in args])
            return np.float64(out) if isinstance(out, float) else out
        if fn in _MATRIX_FNS and pdim < 2:
            return args[0]
        return call(fn, args, bd)

    for st in program.body:
        env[st.target] = ev(st.value)
    new_w = shaped.view_to_stored(env["w"], "tensor", w, bd)
    new_state = {s: shaped.view_to_stored(env[s], kinds[s], stored[s], bd) for s in program.state_names}
    return new_w, new_state
