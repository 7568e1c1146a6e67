"""Random mutation operators on DSL programs (AutoML-Zero / Lion-search style).

Each operator edits the immutable AST and the result is printed and re-parsed with
``dsl.parse`` (the same gate as LLM text): a child that fails to parse, or does not
change the canonical source, is dropped and the operator tries again (bounded). So every
child returned is a valid, canonical program.

Operators (registered under these names in ``search.core.OPERATORS``):

- ``insert``: a new statement before a random statement; its target is a tensor that a later
  statement reads (``x = f(x, ...)``: sign, clip, normalize by rms, interpolate, scale ...),
  or a fresh temporary that then replaces one read of a name in a later statement.
- ``delete``: remove one statement.
- ``replace_fn``: swap a function for another of the same arity and compatible kind
  (elementwise/matrix unary, binary, reduction), or an arithmetic operator (+ - * / **).
- ``replace_operand``: a name or number becomes another name of the same kind or a constant.
- ``constant``: change one number (a literal or a hyperparameter default) on a log scale:
  ``v * exp(N(0, 0.7))``; values in (0.5, 1) such as betas change ``1 - v`` instead, so
  0.999 can become 0.99 or 0.9999 but not 1.2. Rounded to 3 significant digits.
- ``swap``: swap two arguments of a call (``interp(x, y, a)`` -> ``interp(y, x, a)``) or the
  operands of a non-commutative operator.
- ``add_state``: a new state tensor ``s = interp(src, s, beta)`` (an exponential moving
  average with a new hyperparameter) that replaces a read of ``src`` downstream.
- ``remove_state``: drop a state tensor: its updates go, its reads become the quantity it
  averaged (or ``g``).

Structural priors from the matrix-aware optimizers (each a known good idea, placed at random):

- ``factor_moment``: a factored second moment (Adafactor): a parameter-shaped state averaging a
  square, ``v = interp(x * x, v, b)``, becomes a row and a column state
  ``r = interp(row_mean(x * x), r, b)``, ``c = interp(col_mean(x * x), c, b)`` and its reads
  ``r * c / mean(r)``; without such a state, a read of a tensor ``t`` in the update becomes
  ``t / (sqrt(r * c / mean(r)) + eps)`` over new row/col states of ``g``.
- ``orthogonalize_momentum``: a read of a momentum state (or of ``g``) in the statement that
  updates ``w`` becomes its Newton-Schulz orthogonalization with Muon's shape factor,
  ``orthogonalize(m) * sqrt(maximum(1, rows(m) / cols(m)))``.
- ``precondition``: a periodic Kronecker preconditioner (Shampoo): new ``L: rowmat``,
  ``R: colmat`` states averaging ``g g^T`` and ``g^T g``, their inverse fourth roots refreshed
  every k steps (``refresh``, k in 5..50) into ``PL: rowmat = eye``, ``PR: colmat = eye``, and a
  read of a tensor in the update becomes ``matmul(matmul(PL, t), PR)``.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable

from dsl import DSLError, parse
from dsl.kinds import SCALAR, TENSOR, input_kinds, statement_kinds
from dsl.primitives import PRIMITIVES, RESERVED, SCALAR_INPUTS
from dsl.program import (
    Arg,
    Assign,
    BinOp,
    Call,
    Expr,
    Name,
    Num,
    Program,
    names_in,
    nodes,
    replace_at,
    replace_node,
    statement_nodes,
    substitute,
    walk,
)  # `duplicates` pairs this name list with dsl/__init__.py's: an import of the same names, deliberate
from search.core import Campaign, Context, Individual, InvalidCandidate, Operator, Proposal, register_operator

#: Statements beyond this stop insert/add_state (keeps programs readable; the DSL caps at 64).
MAX_BODY = 24
MAX_STATE = 4

_UNARY = [p.name for p in PRIMITIVES.values() if p.arity == 1 and p.kind == "elementwise"]
_MATRIX = [p.name for p in PRIMITIVES.values() if p.kind == "matrix"]
_REDUCE = [p.name for p in PRIMITIVES.values() if p.kind == "reduction"]
_BINARY = [p.name for p in PRIMITIVES.values() if p.arity == 2 and p.kind == "elementwise"]
_AXIS = [p.name for p in PRIMITIVES.values() if p.kind == "axis"]
_CONSTS = [0.5, 0.9, 0.99, 0.999, 1.0, 2.0, 0.1, 0.01, 1e-8, 1e-3]
_EPS = 1e-8


class _Skip(Exception):
    """This attempt cannot apply; try again."""


# -- environment --------------------------------------------------------------------------

def env_before(program: Program, i: int) -> dict[str, str]:
    """Kinds of the names readable just before statement ``i``."""
    env = input_kinds(program)
    for s, k in zip(program.body[:i], statement_kinds(program)[:i]):
        env[s.target] = k
    return env


def _fresh_name(program: Program, stem: str) -> str:
    used = set(program.arg_names) | {s.target for s in program.body} | set(PRIMITIVES) | set(RESERVED)
    k = 1
    while f"{stem}{k}" in used:
        k += 1
    return f"{stem}{k}"


def _const(rng: random.Random) -> Num:
    if rng.random() < 0.7:
        return Num(rng.choice(_CONSTS))
    return Num(_round(10 ** rng.uniform(-4, 1)))


def _round(v: float, digits: int = 3) -> float:
    if v == 0 or not math.isfinite(v):
        return v
    return float(f"{v:.{digits}g}")


def _scalar_leaf(rng: random.Random, env: dict[str, str]) -> Expr:
    names = [n for n, k in env.items() if k == SCALAR]
    if names and rng.random() < 0.35:
        return Name(rng.choice(sorted(names)))
    return _const(rng)


def _tensor_leaf(rng: random.Random, env: dict[str, str]) -> Expr:
    names = sorted(n for n, k in env.items() if k == TENSOR)
    return Name(rng.choice(names))


def random_tensor_expr(rng: random.Random, env: dict[str, str], depth: int = 2,
                       around: Expr | None = None) -> Expr:
    """A random tensor-valued expression; ``around`` (if given) is used as the main operand."""
    x = around if around is not None else (
        _tensor_leaf(rng, env) if depth <= 0 or rng.random() < 0.4
        else random_tensor_expr(rng, env, depth - 1))
    r = rng.random()
    if r < 0.25:
        return Call(rng.choice(_UNARY), (x,))
    if r < 0.50:
        op = rng.choice(["+", "-", "*", "/"])
        other = _tensor_leaf(rng, env) if rng.random() < 0.5 else _scalar_leaf(rng, env)
        if op == "/" and isinstance(other, Name) and env.get(other.id) == TENSOR:
            other = BinOp("+", Call(rng.choice(["abs", "sqrt", "square"]), (other,)), Num(_EPS))
        return BinOp(op, x, other) if rng.random() < 0.7 else BinOp(op, other, x)
    if r < 0.60:
        return Call("clip", (x, Num(rng.choice([0.1, 0.5, 1.0, 2.0, 5.0]))))
    if r < 0.70:
        return Call(rng.choice(["maximum", "minimum"]), (x, _tensor_leaf(rng, env)))
    if r < 0.82:
        return Call("interp", (x, _tensor_leaf(rng, env), Num(rng.choice([0.1, 0.5, 0.9, 0.99]))))
    if r < 0.87:
        return Call(rng.choice(_MATRIX), (x,))
    if r < 0.90:  # centred or scaled by its row or column mean (broadcast back)
        return BinOp(rng.choice(["-", "/"]), x, BinOp("+", Call(rng.choice(["row_mean", "col_mean"]),
                                                               (Call("abs", (x,)),)), Num(_EPS)))
    red = Call(rng.choice(_REDUCE), (x if rng.random() < 0.6 else _tensor_leaf(rng, env),))
    if red.fn == "mean":
        return BinOp("-", x, red)
    return BinOp("/", x, BinOp("+", red, Num(_EPS)))


# -- operators on programs ----------------------------------------------------------------

def _readers_after(program: Program, i: int) -> list[tuple[int, str]]:
    """(statement index, name) for tensor names read by statements i..end."""
    out = []
    for j in range(i, len(program.body)):
        env = env_before(program, j)
        for n in sorted(names_in(program.body[j].value)):
            if env.get(n) == TENSOR:
                out.append((j, n))
    return out


def _replace_one_read(program: Program, j: int, name: str, new: Expr, rng: random.Random) -> Assign:
    st = program.body[j]
    spots = [p for p, nd in nodes(st.value) if isinstance(nd, Name) and nd.id == name]
    if not spots:
        raise _Skip
    return Assign(st.target, replace_at(st.value, rng.choice(spots), new))


def _insertion_spot(program: Program, rng: random.Random) -> tuple[int, dict[str, str], int, str]:
    """Where to insert a statement: a random index ``i``, the kinds of the names readable there, and a
    later read ``(j, name)`` the new statement feeds (``_Skip`` when nothing after ``i`` reads a name)."""
    i = rng.randrange(len(program.body))
    env = env_before(program, i)
    readers = _readers_after(program, i)
    if not readers:
        raise _Skip
    j, name = rng.choice(readers)
    return i, env, j, name


def m_insert(program: Program, rng: random.Random) -> Program:
    if len(program.body) >= MAX_BODY or not program.body:
        raise _Skip
    i, env, j, name = _insertion_spot(program, rng)
    body = list(program.body)
    read_only = set(SCALAR_INPUTS) | set(program.hyperparams)
    if rng.random() < 0.6 and name not in read_only:
        new = Assign(name, random_tensor_expr(rng, env, 1, around=Name(name)))
        body.insert(i, new)
    else:
        t = _fresh_name(program, "t")
        base = Name(name) if rng.random() < 0.7 else None
        new = Assign(t, random_tensor_expr(rng, env, 1, around=base))
        body[j] = _replace_one_read(program, j, name, Name(t), rng)
        body.insert(i, new)
    return program.replace(body=tuple(body))


def m_delete(program: Program, rng: random.Random) -> Program:
    if len(program.body) <= 1:
        raise _Skip
    i = rng.randrange(len(program.body))
    return program.replace(body=program.body[:i] + program.body[i + 1:])


def _compatible_fns(fn: str) -> list[str]:
    p = PRIMITIVES[fn]
    if p.arity == 1 and p.kind in ("elementwise", "matrix"):
        pool = _UNARY + _MATRIX
    elif p.kind == "reduction":
        pool = _REDUCE
    elif p.kind == "axis":
        pool = _AXIS
    elif p.arity == 2:
        pool = _BINARY
    else:
        pool = []
    return [f for f in pool if f != fn]


def m_replace_fn(program: Program, rng: random.Random) -> Program:
    spots = [(i, p, nd) for i, p, nd in statement_nodes(program) if isinstance(nd, (Call, BinOp))]
    if not spots:
        raise _Skip
    i, path, nd = rng.choice(spots)
    if isinstance(nd, Call):
        options = _compatible_fns(nd.fn)
        if not options:
            raise _Skip
        new: Expr = Call(rng.choice(options), nd.args)
    else:
        new = BinOp(rng.choice([o for o in ("+", "-", "*", "/") if o != nd.op]), nd.left, nd.right)
    return replace_node(program, i, path, new)


def m_replace_operand(program: Program, rng: random.Random) -> Program:
    spots = [(i, p, nd) for i, p, nd in statement_nodes(program) if isinstance(nd, (Name, Num))]
    if not spots:
        raise _Skip
    i, path, nd = rng.choice(spots)
    env = env_before(program, i)
    kind = env.get(nd.id, TENSOR) if isinstance(nd, Name) else SCALAR
    if kind not in (TENSOR, SCALAR):  # a row, col or matrix value: only another of its kind fits
        names = sorted(n for n, k in env.items() if k == kind and n != nd.id)
        if not names:
            raise _Skip
        return replace_node(program, i, path, Name(rng.choice(names)))
    if kind == TENSOR:
        names = sorted(n for n, k in env.items() if k == TENSOR and n != getattr(nd, "id", None))
        if not names:
            raise _Skip
        new: Expr = Name(rng.choice(names))
    else:
        new = _scalar_leaf(rng, env)
        if new == nd:
            raise _Skip
    return replace_node(program, i, path, new)


def perturb(v: float, rng: random.Random, sigma: float = 0.7) -> float:
    """Log-scale change of a constant (see the module docstring)."""
    if v == 0:
        return rng.choice([1e-8, 1e-3, 0.1])
    a = abs(v)
    sign = -1.0 if v < 0 else 1.0
    if 0.5 < a < 1:   # a beta: 1 - a moves on the log scale (rounded there, so 0.9995 stays < 1)
        gap = min(max((1 - a) * math.exp(rng.gauss(0, sigma)), 1e-5), 1.0)
        return sign * float(f"{1 - _round(gap):.10g}")
    new = a * math.exp(rng.gauss(0, sigma))
    if rng.random() < 0.05:  # rare sign flips (never for betas)
        sign = -sign
    return _round(sign * new)


def m_constant(program: Program, rng: random.Random) -> Program:
    lits = [(i, p, nd) for i, p, nd in statement_nodes(program) if isinstance(nd, Num)]
    read = set().union(*(names_in(s.value) for s in program.body)) if program.body else set()
    hyper = [k for k, a in enumerate(program.args) if a.default is not None and a.name in read]
    n = len(lits) + len(hyper)
    if n == 0:
        raise _Skip
    k = rng.randrange(n)
    if k < len(lits):
        i, path, nd = lits[k]
        return replace_node(program, i, path, Num(perturb(nd.value, rng)))
    a = hyper[k - len(lits)]
    args = list(program.args)
    args[a] = Arg(args[a].name, perturb(args[a].default, rng))
    return program.replace(args=tuple(args))


def m_swap(program: Program, rng: random.Random) -> Program:
    spots = [(i, p, nd) for i, p, nd in statement_nodes(program)
             if (isinstance(nd, Call) and len(nd.args) >= 2 and nd.args[0] != nd.args[1])
             or (isinstance(nd, BinOp) and nd.op in ("-", "/", "**") and nd.left != nd.right)]
    if not spots:
        raise _Skip
    i, path, nd = rng.choice(spots)
    if isinstance(nd, BinOp):
        new: Expr = BinOp(nd.op, nd.right, nd.left)
    else:
        args = list(nd.args)
        a, b = rng.sample(range(len(args)), 2)
        args[a], args[b] = args[b], args[a]
        new = Call(nd.fn, tuple(args))
    return replace_node(program, i, path, new)


def _with_state_args(program: Program, states: list[str | Arg], extra_hyper: list[Arg]) -> Program:
    """Rebuild the signature: w, g, states without an initial value, the scalar inputs, states with
    one, then the hyperparameters (Python's order: arguments with defaults last). ``states``: names
    of the program's states (kept with their shape) or new ``Arg``s."""
    own = {a.name: a for a in program.args}
    sargs = [own.get(s, Arg(s)) if isinstance(s, str) else s for s in states]
    tensors = [a for a in program.args if a.name in ("w", "g")]
    rest = [a for a in program.args if a.name not in ("w", "g") and a.name not in program.state_names]
    plain = [a for a in rest if a.default is None]
    hyper = [a for a in rest if a.default is not None]
    args = (tensors + [a for a in sargs if a.init is None] + plain + [a for a in sargs if a.init is not None]
            + hyper + extra_hyper)
    names = tuple(a.name for a in sargs)
    ordered = tuple(a.name for a in args if a.name in names)
    return program.replace(args=tuple(args), returns=("w",) + ordered)


def m_add_state(program: Program, rng: random.Random) -> Program:
    if len(program.body) >= MAX_BODY or len(program.state_names) >= MAX_STATE or not program.body:
        raise _Skip
    i, env, j, src = _insertion_spot(program, rng)
    s = _fresh_name(program, "m")
    beta_name = _fresh_name(program, "beta")
    beta = Arg(beta_name, rng.choice([0.9, 0.95, 0.99, 0.999]))
    env = dict(env)
    source: Expr = Name(src) if rng.random() < 0.75 else Call(rng.choice(["square", "abs", "sign"]), (Name(src),))
    upd = Assign(s, Call("interp", (source, Name(s), Name(beta_name))))
    body = list(program.body)
    body[j] = _replace_one_read(program, j, src, Name(s), rng)
    body.insert(i, upd)
    prog = program.replace(body=tuple(body))
    return _with_state_args(prog, list(program.state_names) + [s], [beta])


def m_remove_state(program: Program, rng: random.Random) -> Program:
    if not program.state_names:
        raise _Skip
    s = rng.choice(program.state_names)
    updates = [st for st in program.body if st.target == s]
    repl: Expr = Name("g")
    if updates and isinstance(updates[0].value, Call) and updates[0].value.fn == "interp":
        a0 = updates[0].value.args[0]
        if s not in names_in(a0):
            repl = a0
    body = []
    for st in program.body:
        if st.target == s:
            continue
        body.append(Assign(st.target, substitute(st.value, {s: repl})))
    if not body:
        raise _Skip
    prog = program.replace(body=tuple(body))
    return _with_state_args(prog, [x for x in program.state_names if x != s], [])


# -- structural priors from the matrix-aware optimizers ------------------------------------------

def _update_reads(program: Program, kinds: tuple[str, ...] = (TENSOR,)) -> list[tuple[int, str]]:
    """(statement, name) reads of tensor names in the statements that assign ``w``, last first."""
    out = []
    for j in range(len(program.body) - 1, -1, -1):
        if program.body[j].target != "w":
            continue
        env = env_before(program, j)
        out += [(j, n) for n in sorted(names_in(program.body[j].value)) if env.get(n) in kinds and n != "w"]
    return out


def _square_source(e: Expr, s: str) -> Expr | None:
    """``x`` when ``e`` is ``interp(x * x, s, b)`` or ``interp(square(x), s, b)``."""
    if not (isinstance(e, Call) and e.fn == "interp" and e.args[1] == Name(s)):
        return None
    a = e.args[0]
    if isinstance(a, BinOp) and a.op == "*" and a.left == a.right:
        return a.left
    if isinstance(a, Call) and a.fn == "square":
        return a.args[0]
    return None


def m_factor_moment(program: Program, rng: random.Random) -> Program:
    if len(program.body) + 3 > MAX_BODY or len(program.state_names) >= MAX_STATE + 2:
        raise _Skip
    r, c = _fresh_name(program, "vr"), _fresh_name(program, "vc")
    kinds = program.state_kinds
    squares = [(i, st.target, _square_source(st.value, st.target)) for i, st in enumerate(program.body)
               if kinds.get(st.target) == TENSOR]
    squares = [x for x in squares if x[2] is not None]
    body = list(program.body)
    if squares:  # factor an existing second moment: v -> r c / mean(r)
        i, v, x = rng.choice(squares)
        beta = body[i].value.args[2]
        sq = BinOp("*", x, x)
        body[i:i + 1] = [Assign(r, Call("interp", (Call("row_mean", (sq,)), Name(r), beta))),
                         Assign(c, Call("interp", (Call("col_mean", (sq,)), Name(c), beta)))]
        vhat = BinOp("/", BinOp("*", Name(r), Name(c)), BinOp("+", Call("mean", (Name(r),)), Num(1e-30)))
        body = [Assign(st.target, substitute(st.value, {v: vhat})) if k > i + 1 else st for k, st in enumerate(body)]
        if any(v in names_in(st.value) or st.target == v for st in body):
            raise _Skip  # v is read before its update or assigned twice: not a plain moving average
        states = [Arg(r, kind="row"), Arg(c, kind="col")] + [n for n in program.state_names if n != v]
        return _with_state_args(program.replace(body=tuple(body)), states, [])
    reads = _update_reads(program)
    if not reads:
        raise _Skip
    j, t = rng.choice(reads)
    beta = _fresh_name(program, "beta")
    body[j] = _replace_one_read(program, j, t, BinOp("/", Name(t), BinOp("+", Call("sqrt", (
        BinOp("/", BinOp("*", Name(r), Name(c)), BinOp("+", Call("mean", (Name(r),)), Num(1e-30))),)), Num(_EPS))),
        rng)
    sq = BinOp("*", Name("g"), Name("g"))
    body[j:j] = [Assign(r, Call("interp", (Call("row_mean", (sq,)), Name(r), Name(beta)))),
                 Assign(c, Call("interp", (Call("col_mean", (sq,)), Name(c), Name(beta))))]
    prog = program.replace(body=tuple(body))
    return _with_state_args(prog, [*program.state_names, Arg(r, kind="row"), Arg(c, kind="col")],
                            [Arg(beta, rng.choice([0.99, 0.999]))])


def _direction_reads(program: Program) -> list[tuple[int, str]]:
    """Reads of a momentum (a parameter-shaped state that is not a moving average of a square:
    those sit under a sqrt) outside its own update; else the reads of ``g`` in the update of ``w``."""
    squares = {st.target for st in program.body for e in walk(st.value)
               if (isinstance(e, Call) and e.fn in ("square", "abs")) or (isinstance(e, BinOp) and e.op == "*"
                                                                           and e.left == e.right)}
    momenta = {n for n, k in program.state_kinds.items() if k == TENSOR and n not in squares}
    out = [(j, n) for j, st in enumerate(program.body) for n in sorted(names_in(st.value) & momenta)
           if st.target != n]
    return out or [x for x in _update_reads(program) if x[1] == "g"]


def m_orthogonalize_momentum(program: Program, rng: random.Random) -> Program:
    states = _direction_reads(program)
    if not states:
        raise _Skip
    j, t = rng.choice(states)
    shape = Call("sqrt", (Call("maximum", (Num(1.0), BinOp("/", Call("rows", (Name(t),)),
                                                                 Call("cols", (Name(t),))))),))
    new = BinOp("*", Call("orthogonalize", (Name(t),)), shape)
    body = list(program.body)
    body[j] = _replace_one_read(program, j, t, new, rng)
    return program.replace(body=tuple(body))


def m_precondition(program: Program, rng: random.Random) -> Program:
    if len(program.body) + 4 > MAX_BODY:
        raise _Skip
    reads = _direction_reads(program)
    if not reads:
        raise _Skip
    j, t = rng.choice(reads)
    L, R = _fresh_name(program, "L"), _fresh_name(program, "R")
    PL, PR = _fresh_name(program, "PL"), _fresh_name(program, "PR")
    beta, period = _fresh_name(program, "beta"), _fresh_name(program, "period")
    g = Name("g")
    new = [Assign(L, Call("interp", (Call("matmul", (g, Call("transpose", (g,)))), Name(L), Name(beta)))),
           Assign(R, Call("interp", (Call("matmul", (Call("transpose", (g,)), g)), Name(R), Name(beta)))),
           Assign(PL, Call("refresh", (Name(period), Call("inv_root", (Name(L), Num(4.0), Num(1e-6))), Name(PL)))),
           Assign(PR, Call("refresh", (Name(period), Call("inv_root", (Name(R), Num(4.0), Num(1e-6))), Name(PR))))]
    body = list(program.body)
    body[j] = _replace_one_read(program, j, t, Call("matmul", (Call("matmul", (Name(PL), Name(t))), Name(PR))), rng)
    body[j:j] = new
    prog = program.replace(body=tuple(body))
    states = [*program.state_names, Arg(L, kind="rowmat"), Arg(R, kind="colmat"),
              Arg(PL, kind="rowmat", init="eye"), Arg(PR, kind="colmat", init="eye")]
    return _with_state_args(prog, states, [Arg(beta, rng.choice([0.9, 0.95, 0.99])),
                                           Arg(period, float(rng.choice([5, 10, 20, 50])))])


MUTATIONS: dict[str, Callable[[Program, random.Random], Program]] = {
    "insert": m_insert, "delete": m_delete, "replace_fn": m_replace_fn,
    "replace_operand": m_replace_operand, "constant": m_constant, "swap": m_swap,
    "add_state": m_add_state, "remove_state": m_remove_state, "factor_moment": m_factor_moment,
    "orthogonalize_momentum": m_orthogonalize_momentum, "precondition": m_precondition,
}

#: Default relative weights of the random operators for rule campaigns (the structural priors are
#: rare: each makes a big, specific change).
DEFAULT_WEIGHTS = {"insert": 1.0, "delete": 1.0, "replace_fn": 1.0, "replace_operand": 1.0,
                   "constant": 1.5, "swap": 0.5, "add_state": 0.5, "remove_state": 0.5,
                   "factor_moment": 0.2, "orthogonalize_momentum": 0.2, "precondition": 0.1}


def mutate(program: Program, op: str, rng: random.Random, attempts: int = 20,
           accept: Callable[[Program], bool] | None = None) -> Program | None:
    """Apply mutation ``op``; a valid, canonical, changed program or None after ``attempts``.

    ``accept`` (optional) is an extra validity test, e.g. the kind's normalize (refuses rules
    that never read ``g``), so the operator retries instead of handing back a dud.
    """
    fn = MUTATIONS[op]
    before = program.source()
    for _ in range(attempts):
        try:
            child = fn(program, rng)
        except _Skip:
            continue
        try:
            parsed = parse(child.source())
        except DSLError:
            continue
        if parsed.source() != before and (accept is None or accept(parsed)):
            return parsed
    return None


class RandomMutation(Operator):
    """A registered random operator: parse the parent, apply one mutation."""
    arity = 1
    uses_llm = False
    kinds = ("rule",)

    def __init__(self, op: str):
        self.name = op
        self.op = op

    def propose(self, ctx: Context, parent_groups: list[list[Individual]]) -> list[Proposal]:
        out = []
        for group in parent_groups:
            parent = group[0]
            try:
                prog = parse(parent.text)
            except DSLError as e:  # a stored parent that no longer parses: report, do not crash
                out.append(Proposal(None, self.name, (parent.id,), reason=f"parent does not parse: {e}"))
                continue
            child = mutate(prog, self.op, ctx.rng, accept=lambda p: _usable(ctx, p))
            if child is None:
                out.append(Proposal(None, self.name, (parent.id,),
                                    reason=f"{self.op}: no applicable valid change"))
            else:
                out.append(Proposal(child.source(), self.name, (parent.id,)))
        return out


def _usable(ctx: Context, program: Program) -> bool:
    try:
        ctx.kind.normalize(program.source())
        return True
    except InvalidCandidate:
        return False


def _factory(op: str) -> Callable[[Campaign], Operator]:
    return lambda campaign: RandomMutation(op)


for _name in MUTATIONS:
    register_operator(_name, _factory(_name))
