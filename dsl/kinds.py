"""Shape kinds: the abstract execution every other pass relies on.

Every value is viewed as a matrix on the ``m x n`` view of its parameter (``m = shape[0]``,
``n`` the product of the other dimensions; a 1-D parameter is ``n x 1``, a 0-D one ``1 x 1``).
A kind says which of ``1``, ``m``, ``n`` its two dimensions are:

=========== ======= =====================================================================
kind        shape   what
=========== ======= =====================================================================
scalar      1 x 1   numbers, lr, wd, step, hyperparameters, roles, reductions
tensor      m x n   w, g, plain state: the parameter's own shape
row         m x 1   ``row_mean(g)``; broadcasts across the columns
col         1 x n   ``col_mean(g)``; broadcasts across the rows
rowmat      m x m   ``matmul(g, transpose(g))``
colmat      n x n   ``matmul(transpose(g), g)``
tensor_t    n x m   ``transpose(g)``
row_t       1 x m   ``transpose(row_mean(g))``
col_t       n x 1   ``transpose(col_mean(g))``
=========== ======= =====================================================================

Elementwise operations broadcast (``row * col`` is a tensor; ``row + rowmat`` is refused);
``matmul`` needs equal inner dimensions. A rule using only scalar and tensor values is
exactly the language before shapes. Errors are ``KindError`` (a ``DSLError``) carrying the
offending node, so the parser can name its line and column.
"""
from __future__ import annotations

from .errors import DSLError
from .primitives import FOREACH_PRIMITIVES, PRIMITIVES, ROLE_INPUTS, TENSOR_INPUTS
from .program import BinOp, Call, Expr, Name, Neg, Num, Program, walk

SCALAR, TENSOR = "scalar", "tensor"
ROW, COL, ROWMAT, COLMAT = "row", "col", "rowmat", "colmat"
TENSOR_T, ROW_T, COL_T = "tensor_t", "row_t", "col_t"

#: kind -> (rows, cols) as symbols "1", "m", "n"
DIMS: dict[str, tuple[str, str]] = {
    SCALAR: ("1", "1"), TENSOR: ("m", "n"), ROW: ("m", "1"), COL: ("1", "n"), ROWMAT: ("m", "m"),
    COLMAT: ("n", "n"), TENSOR_T: ("n", "m"), ROW_T: ("1", "m"), COL_T: ("n", "1"),
}
KIND_OF: dict[tuple[str, str], str] = {v: k for k, v in DIMS.items()}
_SHOW = {k: f"{k} ({a} x {b})" for k, (a, b) in DIMS.items()}


class KindError(DSLError):
    """A kind (shape) error at ``node`` (the parser adds its column)."""

    def __init__(self, message: str, node: Expr | None = None, line: int = 0):
        super().__init__(message, line)
        self.node = node


def broadcast(a: str, b: str) -> str | None:
    """The kind of an elementwise combination of kinds ``a`` and ``b`` (None: they do not fit)."""
    out = []
    for x, y in zip(DIMS[a], DIMS[b]):
        if x == y or y == "1":
            out.append(x)
        elif x == "1":
            out.append(y)
        else:
            return None
    return KIND_OF[tuple(out)]


def input_kinds(program: Program) -> dict[str, str]:
    """Kinds of the signature's names: w and g are tensors, states have their declared kind."""
    states = program.state_kinds
    out = {}
    for a in program.args:
        if a.name in TENSOR_INPUTS:
            out[a.name] = TENSOR
        else:
            out[a.name] = states.get(a.name, SCALAR)
    return out


def _need_matrix(fn: str, k: str, e: Expr, what: str = "") -> None:
    if k == SCALAR:
        raise KindError(f"{fn}() needs a tensor argument{what}, got a scalar expression; "
                        "it is meaningless on one number", e)


def call_kind(e: Call, kinds: list[str]) -> str:
    """The kind of ``e`` given its arguments' kinds; KindError on a wrong use."""
    prim = PRIMITIVES[e.fn]
    fn = e.fn
    if prim.kind in ("reduction", "group"):
        if prim.kind == "group" and not (isinstance(e.args[0], Name) and e.args[0].id in TENSOR_INPUTS):
            raise KindError(f"{fn}() takes the input g or w by name (e.g. {fn}(g)): the group's norm is "
                            "computed from the parameters' own tensors", e)
        return SCALAR
    if prim.kind == "elementwise":
        out = kinds[0]
        for k in kinds[1:]:
            b = broadcast(out, k)
            if b is None:
                raise KindError(f"{fn}() cannot combine a {_SHOW[out]} value with a {_SHOW[k]} value; "
                                "shapes must match or be 1 (row, col and scalar values broadcast)", e)
            out = b
        return out
    if prim.kind == "matrix":
        if kinds[0] != TENSOR:
            raise KindError(f"{fn}() needs a tensor argument (parameter-shaped), got a {_SHOW[kinds[0]]} value", e)
        return TENSOR
    if prim.kind == "shape":
        _need_matrix(fn, kinds[0], e)
        return SCALAR
    if prim.kind == "axis":
        _need_matrix(fn, kinds[0], e, " (a row or column reduction)")
        a, b = DIMS[kinds[0]]
        return KIND_OF[(a, "1") if fn.startswith("row") else ("1", b)]
    if prim.kind == "control":  # refresh(k, new, old)
        if kinds[0] != SCALAR:
            raise KindError(f"refresh()'s period k must be a scalar, got a {_SHOW[kinds[0]]} value", e)
        b = broadcast(kinds[1], kinds[2])
        if b is None:
            raise KindError(f"refresh() cannot choose between a {_SHOW[kinds[1]]} value and a {_SHOW[kinds[2]]} "
                            "value; new and old must have the same shape (or one be a scalar)", e)
        return b
    if fn == "transpose":
        _need_matrix(fn, kinds[0], e)
        a, b = DIMS[kinds[0]]
        return KIND_OF[(b, a)]
    if fn == "matmul":
        for k in kinds:
            _need_matrix(fn, k, e, " on both sides (use * to scale by a scalar)")
        (a, b), (c, d) = DIMS[kinds[0]], DIMS[kinds[1]]
        if b != c:
            raise KindError(f"matmul() inner dimensions differ: {_SHOW[kinds[0]]} times {_SHOW[kinds[1]]}; "
                            "transpose one side (e.g. matmul(g, transpose(g)) is m x m)", e)
        return KIND_OF[(a, d)]
    if fn in ("inv_root", "eigvecs", "qr_q"):
        a, b = DIMS[kinds[0]]
        if a != b or a == "1":
            raise KindError(f"{fn}() needs a square matrix (rowmat m x m or colmat n x n), got a "
                            f"{_SHOW[kinds[0]]} value", e)
        if fn == "inv_root" and (kinds[1] != SCALAR or kinds[2] != SCALAR):
            raise KindError("inv_root(M, p, eps): p and eps must be scalars", e)
        return kinds[0]
    if fn in ("keep_cols", "randn_like"):
        _need_matrix(fn, kinds[0], e)
        if kinds[1] != SCALAR:
            what = "the column count r" if fn == "keep_cols" else "the seed"
            raise KindError(f"{fn}()'s second argument ({what}) must be a scalar, got a {_SHOW[kinds[1]]} value", e)
        return kinds[0]
    raise KindError(f"no kind rule for {fn}()", e)


def expr_kind(e: Expr, env: dict[str, str], line: int = 0) -> str:
    """Kind of ``e`` given the kinds of names in ``env``; raises KindError on a type error."""
    try:
        return _kind(e, env)
    except KindError as err:
        if not err.line and line:
            err2 = KindError(err.message, err.node, line)
            raise err2 from None
        raise


def _kind(e: Expr, env: dict[str, str]) -> str:
    if isinstance(e, Num):
        return SCALAR
    if isinstance(e, Name):
        if e.id not in env:
            raise KindError(f"name '{e.id}' is used before it is assigned", e)
        return env[e.id]
    if isinstance(e, Neg):
        return _kind(e.operand, env)
    if isinstance(e, BinOp):
        kl, kr = _kind(e.left, env), _kind(e.right, env)
        out = broadcast(kl, kr)
        if out is None:
            raise KindError(f"'{e.op}' cannot combine a {_SHOW[kl]} value with a {_SHOW[kr]} value; shapes "
                            "must match or be 1 (use matmul for matrix products)", e)
        return out
    if isinstance(e, Call):
        return call_kind(e, [_kind(a, env) for a in e.args])
    raise KindError(f"unknown expression node {type(e).__name__}", None)


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


def show(kind: str) -> str:
    """``"row (m x 1)"``: a kind with its shape, for messages."""
    return _SHOW[kind]


def extensions(program: Program) -> tuple[str, ...]:
    """What a rule uses beyond the multi-tensor (foreach) language, one phrase each: shaped or
    initialised state, role inputs, primitives of the other kinds. Empty: the rule compiles to a
    foreach plan exactly as before shapes existed; else it runs parameter by parameter."""
    out = []
    for a in program.args:
        if a.name in program.state_names and (a.kind not in (None, TENSOR) or a.init is not None):
            out.append(f"state {a.text()}")
        if a.name in ROLE_INPUTS:
            out.append(f"role input {a.name}")
    fns = sorted({n.fn for s in program.body for n in walk(s.value)
                  if isinstance(n, Call) and n.fn not in FOREACH_PRIMITIVES})
    out.extend(f"{f}()" for f in fns)
    return tuple(out)


def per_element(program: Program) -> bool:
    """True when the update of each entry depends only on that entry (and the group's scalars): only
    elementwise primitives, no role input (a role differs per tensor) and no shaped state. Such a
    rule may run on parameters concatenated into one flat tensor."""
    if any(a.name in ROLE_INPUTS for a in program.args):
        return False
    if any(k != TENSOR for k in program.state_kinds.values()):
        return False
    return all(PRIMITIVES[n.fn].kind == "elementwise" for s in program.body for n in walk(s.value)
               if isinstance(n, Call))
