"""Stage 3, lowering with fusion: ``S``/``T`` graph nodes become foreach instructions.

Constant factors are hoisted out of products and quotients and folded into the fused forms
torch offers (add with alpha, addcmul, addcdiv, lerp); see the package docstring.
"""
from __future__ import annotations

from dataclasses import dataclass

from .graph import C, Graph, S, T


@dataclass
class Instr:
    op: str
    ins: list[int]          # value ids (registers holding lists)
    sc: list[int]           # graph ids of C nodes (scalar operands)
    out: int
    kind: int
    prio: int
    inplace: tuple[int, ...] = ()  # operand positions that may serve as the destination
    extra: object = None           # e.g. the primitive name of a "matrix" instruction
    dest: int | None = None        # chosen in-place operand position (None: new tensors)


# op -> (out-of-place fn, in-place fn or None); scalar/list variants share names.


UNARY = ("neg", "abs", "sign", "sqrt", "exp", "log", "tanh", "reciprocal")


class Lowering:
    def __init__(self, g: Graph, uses: dict[int, int]):
        self.g = g
        self.uses = uses
        self.instrs: list[Instr] = []
        self.memo: dict[int, int] = {}
        self.kind_of: dict[int, int] = {}  # value id -> kind
        self.n_values = 0
        self.one = g.num(1.0)
        self.minus_one = g.num(-1.0)
        self._prio = 0

    # -- values -------------------------------------------------------------
    def new_value(self, kind: int) -> int:
        v = self.n_values
        self.n_values += 1
        self.kind_of[v] = kind
        return v

    def emit(self, op: str, ins: list[int], sc: list[int] = (), kind: int | None = None,
             inplace: tuple[int, ...] = (0,), extra=None) -> int:
        if kind is None:
            kind = max(self.kind_of[i] for i in ins)
        out = self.new_value(kind)
        self.instrs.append(Instr(op, list(ins), list(sc), out, kind, self._prio, inplace, extra))
        return out

    # -- scalar helpers (new C nodes) ----------------------------------------
    def cmul(self, a: int | None, b: int | None) -> int | None:
        if a is None:
            return b
        if b is None:
            return a
        return self.g.add("*", (a, b))

    def cdiv(self, a: int | None, b: int) -> int:
        return self.g.add("/", (self.one if a is None else a, b))

    def cneg(self, a: int | None) -> int:
        return self.minus_one if a is None else self.g.add("neg", (a,))

    def one_minus(self, a: int) -> int:
        return self.g.add("-", (self.one, a))

    def k(self, n: int) -> int:
        return self.g.kind[n]

    # -- pattern helpers -----------------------------------------------------
    def single_use(self, n: int) -> bool:
        return self.uses.get(n, 1) == 1 and n not in self.memo

    def scaled(self, n: int, root: bool = True) -> tuple[int | None, int]:
        """Write node n as coef * core with coef a C node (None = 1), hoisting constant factors
        through single-use products, quotients and negations."""
        if not root and not self.single_use(n):
            return None, n
        node, g = self.g.nodes[n], self.g
        if node.op == "neg":
            c, x = self.scaled(node.args[0], False)
            return self.cneg(c), x
        if node.op == "*":
            a, b = node.args
            if self.k(a) == C:
                c, x = self.scaled(b, False)
                return self.cmul(a, c), x
            if self.k(b) == C:
                c, x = self.scaled(a, False)
                return self.cmul(c, b), x
            ca, xa = self.scaled(a, False)
            cb, xb = self.scaled(b, False)
            if ca is None and cb is None:
                return None, n
            return self.cmul(ca, cb), g.add("*", (xa, xb), prio=g.prio[n])
        if node.op == "/":
            a, b = node.args
            if self.k(b) == C:
                c, x = self.scaled(a, False)
                return self.cdiv(c, b), x
            if self.k(a) == C:
                return None, n
            ca, xa = self.scaled(a, False)
            cb, xb = self.scaled(b, False)
            if ca is None and cb is None:
                return None, n
            coef = ca if cb is None else self.cdiv(ca, cb)
            return coef, g.add("/", (xa, xb), prio=g.prio[n])
        return None, n

    def term(self, n: int):
        """n (an operand of + or -) as (coef, form, parts) when a fused form gains something:
        form "mul" -> coef*p0*p1, "div" -> coef*p0/p1, "plain" -> coef*p0. Else None."""
        if not self.single_use(n):
            return None
        c, x = self.scaled(n, root=True)
        xn = self.g.nodes[x]
        if xn.op in ("*", "/") and (x != n or self.single_use(x)) and \
                all(self.k(a) != C for a in xn.args):
            return c, ("mul" if xn.op == "*" else "div"), xn.args
        if xn.op == "square" and self.k(xn.args[0]) != C:
            return c, "mul", (xn.args[0], xn.args[0])
        if c is None:
            return None
        return c, "plain", (x,)

    def fused_add(self, base: int, coef: int | None, form: str, parts) -> int:
        """base + coef * form(parts), in one foreach call."""
        if form == "plain":
            return self.emit("add", [base, self.L(parts[0])], [] if coef is None else [coef])
        op = "addcmul" if form == "mul" else "addcdiv"
        return self.emit(op, [base, self.L(parts[0]), self.L(parts[1])],
                         [] if coef is None else [coef])

    # -- lowering --------------------------------------------------------------
    def L(self, n: int) -> int:
        """The value id holding node n (emitting its instructions on first request)."""
        if n in self.memo:
            return self.memo[n]
        saved, self._prio = self._prio, self.g.prio[n]
        try:
            v = self._lower(n)
        finally:
            self._prio = saved
        self.memo[n] = v
        return v

    def input_value(self, n: int) -> int:  # pre-registered by the caller
        raise KeyError(n)

    def _lower(self, n: int) -> int:
        g, node = self.g, self.g.nodes[n]
        op, args = node.op, node.args
        k = self.k
        if g.kind[n] == C:
            raise AssertionError("constant nodes are not lowered")
        if op == "in":
            return self.input_value(n)
        if op == "+":
            a, b = args
            if k(a) == C:
                return self.emit("add_s", [self.L(b)], [a])
            if k(b) == C:
                return self.emit("add_s", [self.L(a)], [b])
            tb = self.term(b)
            if tb is not None:
                return self.fused_add(self.L(a), *tb)
            ta = self.term(a)
            if ta is not None:
                return self.fused_add(self.L(b), *ta)
            return self.emit("add", [self.L(a), self.L(b)], inplace=(0, 1))
        if op == "-":
            a, b = args
            if k(b) == C:
                return self.emit("sub_s", [self.L(a)], [b])
            if k(a) == C:  # c - t == (-t) + c, bit for bit
                return self.emit("add_s", [self.emit("neg", [self.L(b)])], [a])
            tb = self.term(b)
            if tb is not None:
                c, form, parts = tb
                return self.fused_add(self.L(a), self.cneg(c), form, parts)
            return self.emit("sub", [self.L(a), self.L(b)])
        if op in ("*", "/", "neg"):
            c, x = self.scaled(n, root=True)
            if c is not None:
                if op == "/" and k(args[1]) == C and x == args[0]:
                    return self.emit("div_s", [self.L(x)], [args[1]])  # exact x / c
                if op == "neg" and x == args[0]:
                    return self.emit("neg", [self.L(x)])
                return self.emit("mul_s", [self.L(x)], [c])
            a, b = args
            if op == "*":
                return self.emit("mul", [self.L(a), self.L(b)], inplace=(0, 1))
            if k(a) == C:  # c / t == reciprocal(t) * c (what torch's __rtruediv__ does)
                return self.emit("mul_s", [self.emit("reciprocal", [self.L(b)])], [a])
            return self.emit("div", [self.L(a), self.L(b)])
        if op == "**":
            a, b = args
            if k(b) == C:
                return self.emit("pow_s", [self.L(a)], [b])
            if k(a) == C:
                return self.emit("rpow_s", [self.L(b)], [a], inplace=())
            return self.emit("pow", [self.L(a), self.L(b)])
        if op in UNARY:
            return self.emit(op, [self.L(args[0])])
        if op == "square":
            x = self.L(args[0])
            return self.emit("mul", [x, x], inplace=(0, 1))
        if op in ("maximum", "minimum"):
            a, b = args
            if k(a) == C:
                a, b = b, a
            if k(b) == C:
                return self.emit(op + "_s", [self.L(a)], [b])
            return self.emit(op, [self.L(a), self.L(b)], inplace=(0, 1))
        if op == "clip":
            x, c = args
            if k(c) == C:
                lo = self.emit("maximum_s", [self.L(x)], [g.add("neg", (c,))])
                return self.emit("minimum_s", [lo], [c])
            nc = self.emit("neg", [self.L(c)])
            if k(x) == C:
                lo = self.emit("maximum_s", [nc], [x])
            else:
                lo = self.emit("maximum", [self.L(x), nc], inplace=(0, 1))
            return self.emit("minimum", [lo, self.L(c)], inplace=(0, 1))
        if op == "interp":
            return self._interp(n, *args)
        if op in ("norm", "rms", "mean"):
            x = args[0]
            if k(x) == S:
                if op == "mean":
                    return self.L(x)
                return self.emit("norm", [self.L(x)], kind=S, inplace=())
            return self.emit(op, [self.L(x)], kind=S, inplace=())
        if op in ("orthogonalize", "row_normalize", "col_normalize"):
            return self.emit("matrix", [self.L(args[0])], kind=T, inplace=(), extra=op)
        raise ValueError(f"cannot compile operation {op!r}")

    def _interp(self, n: int, x: int, y: int, a: int) -> int:
        """interp(x, y, a) = (1 - a) * x + a * y."""
        k, g = self.k, self.g
        if k(x) != C and k(y) != C and k(x) == k(y) and k(a) <= k(x):
            if k(a) == C:
                # a single-use product/quotient on one side: scale the other side, add the product
                for p_node, q_node, wp, wq in ((x, y, self.one_minus(a), a), (y, x, a, self.one_minus(a))):
                    t = self.term(p_node)
                    if t is not None and t[1] != "plain" and not self._is_term(q_node):
                        c, form, parts = t
                        base = self.emit("mul_s", [self.L(q_node)], [wq])
                        return self.fused_add(base, self.cmul(wp, c), form, parts)
                return self.emit("lerp", [self.L(x), self.L(y)], [a, self.one_minus(a)], inplace=(0, 1))
            return self.emit("lerp_t", [self.L(x), self.L(y), self.L(a)])
        # mixed kinds: the definition, literally
        expanded = g.add("+", (g.add("*", (self.one_minus(a), x), prio=g.prio[n]),
                               g.add("*", (a, y), prio=g.prio[n])), prio=g.prio[n])
        return self.L(expanded)

    def _is_term(self, n: int) -> bool:
        t = self.term(n) if self.single_use(n) else None
        return t is not None and t[1] != "plain"
