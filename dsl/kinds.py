"""Scalar-vs-tensor inference: the abstract execution every other pass relies on.

A value is ``"tensor"`` (shaped like w) or ``"scalar"`` (one number per
parameter tensor: literals, lr, wd, step, hyperparameters, reductions).
"""
from __future__ import annotations

from .errors import DSLError
from .primitives import PRIMITIVES, TENSOR_INPUTS
from .program import BinOp, Call, Expr, Name, Neg, Num, Program

SCALAR, TENSOR = "scalar", "tensor"


def input_kinds(program: Program) -> dict[str, str]:
    """Kinds of the signature's names: w, g and state tensors are tensors."""
    out = {}
    for a in program.args:
        is_tensor = a.name in TENSOR_INPUTS or a.name in program.state_names
        out[a.name] = TENSOR if is_tensor else SCALAR
    return out


def expr_kind(e: Expr, env: dict[str, str], line: int = 0) -> str:
    """Kind of ``e`` given the kinds of names in ``env``; raises DSLError on a type error."""
    if isinstance(e, Num):
        return SCALAR
    if isinstance(e, Name):
        if e.id not in env:
            raise DSLError(f"name '{e.id}' is used before it is assigned", line)
        return env[e.id]
    if isinstance(e, Neg):
        return expr_kind(e.operand, env, line)
    if isinstance(e, BinOp):
        kl, kr = expr_kind(e.left, env, line), expr_kind(e.right, env, line)
        return TENSOR if TENSOR in (kl, kr) else SCALAR
    if isinstance(e, Call):
        prim = PRIMITIVES[e.fn]
        kinds = [expr_kind(a, env, line) for a in e.args]
        if prim.kind == "reduction":
            return SCALAR
        if prim.kind == "matrix":
            if kinds[0] != TENSOR:
                raise DSLError(f"{e.fn}() needs a tensor argument, got a scalar expression", line)
            return TENSOR
        return TENSOR if TENSOR in kinds else SCALAR
    raise DSLError(f"unknown expression node {type(e).__name__}", line)


def statement_kinds(program: Program) -> list[str]:
    """Kind of each statement's value, in order; checks every name is bound before use."""
    env = input_kinds(program)
    out = []
    for s in program.body:
        k = expr_kind(s.value, env, s.line)
        env[s.target] = k
        out.append(k)
    return out


def final_kinds(program: Program) -> dict[str, str]:
    env = input_kinds(program)
    for s, k in zip(program.body, statement_kinds(program)):
        env[s.target] = k
    return env
