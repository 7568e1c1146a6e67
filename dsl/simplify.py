"""``simplify(program)``: the same update, written smaller.

Passes, repeated until nothing changes (so ``simplify`` is idempotent):

1. **Rewrite** every expression bottom-up: fold number-only subexpressions with
   the reference interpreter's own float64 arithmetic (hyperparameter names are
   never folded: they are overridable), and apply identities that hold exactly
   in IEEE arithmetic: ``x*1``, ``x/1``, ``x**1``, ``x+0``, ``x-0``, ``0-x = -x``,
   ``--x``, ``x + -y = x - y``, ``x - -y = x + y``, ``-x + y = y - x``,
   ``x*-1 = -x``, ``x + (-c)*y = x - c*y``, ``(-x)*(-y) = x*y``, ``sign(sign x)``, ``abs(abs x)``,
   ``abs(-x)``, ``square(-x)``, ``square(abs x)``, ``abs(square x)``,
   ``maximum(x, x)``, ``minimum(x, x)``, ``clip(clip(x, c), c)``,
   ``interp(x, y, 0) = x``, ``interp(x, y, 1) = y``, and ``0*s = 0`` for a plain
   scalar ``s`` (numbers and scalar inputs joined by + - *).
   A rewrite never changes an expression's kind (scalar/tensor): ``interp(s, g, 0)``
   is a tensor full of ``s`` and stays as written.
2. **Prune** with the checker's loop-carried liveness: drop dead statements and
   self-assignments, drop state tensors that are not carried between steps from
   the signature and the return (less optimizer memory, same update; a state
   still assigned and read within the step becomes a temporary), and drop
   ``lr``/``wd``/``step``/hyperparameters that nothing live reads.
3. **Inline** a temporary's definition into its uses when that is sound (no
   name it reads is reassigned in between) and reads better: numbers and plain
   names everywhere they are used; other expressions only when used exactly
   once, in the next statement or when they are tiny, and the result stays small.

Exactness: wherever the original's intermediate values are finite, the result
computes bit-identical values (up to the sign of a zero). Identities that drop
an operand (``interp(x, y, 0)``, ``0*s``) can turn an original ``nan`` (from
``0 * inf``) into a number; that only happens for a rule that has already
diverged.
"""
from __future__ import annotations

import numpy as np

from .checker import liveness, validate
from .interpret import binop, call
from .kinds import SCALAR, broadcast, call_kind, input_kinds
from .primitives import MAX_DEPTH, MAX_NODES_PER_EXPR, PRIMITIVES, SCALAR_INPUTS
from .program import Assign, BinOp, Call, Expr, Name, Neg, Num, Program, count_nodes, depth, names_in, substitute, walk

#: Readability limits for inlining a non-trivial expression.
INLINE_MAX_NODES = 14
INLINE_MAX_DEPTH = 6
INLINE_TINY_NODES = 3


def simplify(program: Program) -> Program:
    """Dead code, constants, exact identities, inlining; to a fixed point."""
    validate(program)
    p = program
    for _ in range(1000):
        q = _inline(_prune(_rewrite(p)))
        if q == p:
            return q
        p = q
    return p  # unreachable in practice: every pass shrinks the program or leaves it alone


# -- 1. rewriting ---------------------------------------------------------------

def _is(e: Expr, v: float) -> bool:
    return isinstance(e, Num) and e.value == v


def _fold(e: Expr) -> Expr:
    """Evaluate a number-only node exactly as the reference interpreter would."""
    if isinstance(e, Neg):
        v = -np.float64(e.operand.value)
    elif isinstance(e, BinOp):
        v = binop(e.op, np.float64(e.left.value), np.float64(e.right.value))
    else:
        v = call(e.fn, [np.float64(a.value) for a in e.args])
    v = float(v)
    return Num(v) if np.isfinite(v) else e  # nan/inf cannot be written as a literal


def _plain_scalar(e: Expr, scalar_names: set[str]) -> bool:
    """Numbers and scalar inputs joined by + - * and negation: finite whenever the inputs are."""
    for n in walk(e):
        if isinstance(n, Name) and n.id not in scalar_names:
            return False
        if isinstance(n, Call) or (isinstance(n, BinOp) and n.op not in "+-*"):
            return False
    return True


def _neg_coeff(e: Expr) -> bool:
    """``(-c) * y`` or ``(-c) / y``: equal to ``-(c * y)`` bit for bit."""
    return isinstance(e, BinOp) and e.op in "*/" and isinstance(e.left, Num) and e.left.value < 0


def _neg(x: Expr) -> Expr:
    if isinstance(x, Neg):
        return x.operand
    if isinstance(x, Num):
        return Num(-x.value)
    return Neg(x)


class _Rewriter:
    def __init__(self, env: dict[str, str], scalar_inputs: set[str]):
        self.env = env
        self.scalar_inputs = scalar_inputs

    def __call__(self, e: Expr) -> tuple[Expr, str]:
        if isinstance(e, Num):
            return e, SCALAR
        if isinstance(e, Name):
            return e, self.env[e.id]
        if isinstance(e, Neg):
            o, k = self(e.operand)
            return _neg(o), k
        if isinstance(e, BinOp):
            (lhs, kl), (rhs, kr) = self(e.left), self(e.right)
            return self._binop(e.op, lhs, rhs), broadcast(kl, kr)
        args, kinds = zip(*(self(a) for a in e.args))
        k = call_kind(e, list(kinds))
        return self._call(e.fn, args, kinds, k), k

    def _binop(self, op: str, lhs: Expr, rhs: Expr) -> Expr:
        if isinstance(lhs, Num) and isinstance(rhs, Num):
            return _fold(BinOp(op, lhs, rhs))
        if op in ("+", "-"):  # mirror rules: a negative right operand flips the operator
            flip = "-" if op == "+" else "+"
            if _is(rhs, 0):
                return lhs
            if _is(lhs, 0):
                return rhs if op == "+" else _neg(rhs)
            if isinstance(rhs, Neg):
                return self._binop(flip, lhs, rhs.operand)
            if isinstance(rhs, Num) and rhs.value < 0:
                return BinOp(flip, lhs, Num(-rhs.value))
            if _neg_coeff(rhs):
                return BinOp(flip, lhs, BinOp(rhs.op, Num(-rhs.left.value), rhs.right))
            if op == "+" and isinstance(lhs, Neg):
                return BinOp("-", rhs, lhs.operand)
        elif op == "*":
            if _is(rhs, 1):
                return lhs
            if _is(lhs, 1):
                return rhs
            if _is(rhs, -1):
                return _neg(lhs)
            if _is(lhs, -1):
                return _neg(rhs)
            if isinstance(lhs, Neg) and isinstance(rhs, Neg):
                return self._binop("*", lhs.operand, rhs.operand)
            if (_is(lhs, 0) and _plain_scalar(rhs, self.scalar_inputs)) or \
                    (_is(rhs, 0) and _plain_scalar(lhs, self.scalar_inputs)):
                return Num(0.0)
        elif op == "/":
            if _is(rhs, 1):
                return lhs
            if _is(rhs, -1):
                return _neg(lhs)
        elif op == "**":
            if _is(rhs, 1):
                return lhs
        return BinOp(op, lhs, rhs)

    def _call(self, fn: str, args: tuple[Expr, ...], kinds: tuple[str, ...], k: str) -> Expr:
        if all(isinstance(a, Num) for a in args) and PRIMITIVES[fn].kind in ("elementwise", "reduction"):
            return _fold(Call(fn, args))
        x = args[0]
        inner = x.fn if isinstance(x, Call) else None
        if fn in ("sign", "abs") and inner == fn:
            return x
        if fn == "abs" and isinstance(x, Neg):
            return self._call("abs", (x.operand,), kinds, k)
        if fn == "abs" and inner == "square":
            return x
        if fn == "square" and isinstance(x, Neg):
            return self._call("square", (x.operand,), kinds, k)
        if fn == "square" and inner == "abs":
            return Call("square", x.args)
        if fn in ("maximum", "minimum") and args[0] == args[1]:
            return x
        if fn == "clip" and inner == "clip" and x.args[1] == args[1]:
            return x
        if fn == "interp":
            if _is(args[2], 0) and kinds[0] == k:
                return args[0]
            if _is(args[2], 1) and kinds[1] == k:
                return args[1]
        return Call(fn, args)


def _rewrite(p: Program) -> Program:
    env = input_kinds(p)
    rw = _Rewriter(env, set(SCALAR_INPUTS) | set(p.hyperparams))
    body = []
    for s in p.body:
        e, k = rw(s.value)
        env[s.target] = k
        if e != Name(s.target):  # x = x does nothing
            body.append(Assign(s.target, e, s.line))
    return p.replace(body=tuple(body))


# -- 2. pruning -----------------------------------------------------------------

def _prune(p: Program) -> Program:
    lv = liveness(p)
    body = tuple(s for s, live in zip(p.body, lv.live) if live)
    states = set(p.state_names)
    keep = []
    for a in p.args:
        if a.name in ("w", "g"):
            keep.append(a)                      # required by the language
        elif a.name in states:
            if a.name in lv.live_out:
                keep.append(a)
        elif a.name in lv.live_in:
            keep.append(a)                      # lr, wd, step, hyperparameters that matter
    q = Program(p.name, tuple(keep), body, ())
    return q.replace(returns=("w",) + q.state_names)


# -- 3. inlining ----------------------------------------------------------------

def _occurrences(e: Expr, name: str) -> int:
    return sum(1 for n in walk(e) if isinstance(n, Name) and n.id == name)


def _inline(p: Program) -> Program:
    body = p.body
    for i, s in enumerate(body):
        t, e = s.target, s.value
        if t in p.returns or t in names_in(e):
            continue
        uses = []  # (statement index, occurrences) reached by this definition
        for j in range(i + 1, len(body)):
            c = _occurrences(body[j].value, t)
            if c:
                uses.append((j, c))
            if body[j].target == t:
                break
        if not uses:
            continue
        leaf = isinstance(e, (Num, Name))
        last = uses[-1][0]
        reads = names_in(e)
        if any(body[m].target in reads for m in range(i + 1, last)):
            continue  # an input of e changes before a use: substitution would read the new value
        new = {j: substitute(body[j].value, {t: e}) for j, _ in uses}
        if not leaf:
            if len(uses) != 1 or uses[0][1] != 1:
                continue  # duplicating work is not simpler
            j = uses[0][0]
            if not (j == i + 1 or count_nodes(e) <= INLINE_TINY_NODES):
                continue
            if count_nodes(new[j]) > INLINE_MAX_NODES or depth(new[j]) > INLINE_MAX_DEPTH:
                continue
        if any(count_nodes(v) > MAX_NODES_PER_EXPR or depth(v) > MAX_DEPTH for v in new.values()):
            continue
        out = [Assign(b.target, new.get(j, b.value), b.line) for j, b in enumerate(body) if j != i]
        return p.replace(body=tuple(out))
    return p


__all__ = ["simplify"]
