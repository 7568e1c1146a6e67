"""Compile a Program ONCE into a multi-tensor plan: a list of ``torch._foreach_*`` calls.

The plan is what ``dsl.compile.to_optimizer`` runs on every step, for each bucket of
parameters (same device, dtype and step count). No AST is looked at on the hot path.

Stages (all at class-creation time):

1. **Graph.** The body becomes a DAG in SSA form with common subexpressions merged. Every
   node has a kind: ``C`` (a group constant: a function of numbers, lr, wd, step and the
   hyperparameters, one value for the whole bucket), ``S`` (one scalar per parameter tensor,
   from a reduction: a list of 0-dim tensors) or ``T`` (a tensor per parameter: a list).
2. **Scalar program.** The ``C`` nodes are evaluated once per step in numpy float64, exactly
   as the reference interpreter does (1/0 = inf, log(-1) = nan, no exceptions).
3. **Lowering with fusion.** ``S``/``T`` nodes become foreach instructions. Constant factors
   are hoisted out of products and quotients (``lr * (m / c) / d`` -> ``(lr / c) * (m / d)``)
   and folded into the fused forms torch offers:
   ``a + c*b -> add(a, b, alpha=c)``, ``a + c*(b*d) -> addcmul``, ``a + c*(b/d) -> addcdiv``,
   ``interp(x, y, a) = x + a*(y - x) -> lerp(x, y, a)`` (or, in place into ``y``,
   ``lerp_(y, x, 1 - a)``), ``interp(b*d, y, a) -> mul_(y, a); addcmul_(y, b, d, 1 - a)``.
   Hoisting changes rounding (not the math): results match the interpreter to ~1e-15.
4. **Scheduling and storage.** Instructions run in statement order where the data flow
   allows; an instruction writes in place into an operand whose value is dead afterwards
   (a temporary, or the parameter / a state buffer whose old value is no longer read). The
   gradient is never written. Final values that did not land in their buffer are copied.

Matrix primitives (orthogonalize, row/col_normalize) loop over tensors, reusing the
reference implementation: they are per-matrix work anyway.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .interpret import call as _ref_call
from .primitives import PRIMITIVES
from .program import BinOp, Call, Expr, Name, Neg, Num, Program

C, S, T = 0, 1, 2  # kinds, ordered: combining kinds takes the max
_KIND_NAME = {C: "const", S: "per-tensor scalar", T: "tensor"}
_BINOPS = ("+", "-", "*", "/", "**")


# ---------------------------------------------------------------------------------------------
# 1. Graph
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    op: str  # "in" | "num" | "neg" | + - * / ** | a primitive name
    args: tuple[int, ...] = ()
    value: float | str | None = None  # the number of a "num", the name of an "in"


class Graph:
    """A hash-consed DAG: adding an existing (op, args, value) returns the existing id."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.kind: list[int] = []
        self.prio: list[int] = []  # index of the first statement that needs the node
        self._index: dict[tuple, int] = {}

    def add(self, op: str, args: tuple[int, ...] = (), value=None, kind: int | None = None,
            prio: int = 0) -> int:
        key = (op, args, float(value).hex() if isinstance(value, float) else value)
        nid = self._index.get(key)
        if nid is not None:
            self.prio[nid] = min(self.prio[nid], prio)
            return nid
        if kind is None:
            kinds = [self.kind[a] for a in args]
            prim = PRIMITIVES.get(op)
            if op == "num":
                kind = C
            elif prim is not None and prim.kind == "reduction":
                kind = C if kinds[0] == C else S
            elif prim is not None and prim.kind == "matrix":
                kind = T
            else:
                kind = max(kinds)
        nid = len(self.nodes)
        self.nodes.append(Node(op, args, value))
        self.kind.append(kind)
        self.prio.append(prio)
        self._index[key] = nid
        return nid

    def num(self, v: float) -> int:
        return self.add("num", (), float(v))


def build_graph(program: Program) -> tuple[Graph, dict[str, int], list[int]]:
    """The program as a DAG. Returns (graph, input name -> node, output nodes in return order)."""
    g = Graph()
    state = set(program.state_names)
    inputs: dict[str, int] = {}
    env: dict[str, int] = {}
    for a in program.args:
        k = T if a.name in ("w", "g") or a.name in state else C
        env[a.name] = inputs[a.name] = g.add("in", (), a.name, kind=k)

    def expr(e: Expr, prio: int) -> int:
        if isinstance(e, Num):
            return g.add("num", (), float(e.value), prio=prio)
        if isinstance(e, Name):
            return env[e.id]
        if isinstance(e, Neg):
            return g.add("neg", (expr(e.operand, prio),), prio=prio)
        if isinstance(e, BinOp):
            return g.add(e.op, (expr(e.left, prio), expr(e.right, prio)), prio=prio)
        if isinstance(e, Call):
            return g.add(e.fn, tuple(expr(a, prio) for a in e.args), prio=prio)
        raise TypeError(f"unknown expression node {type(e).__name__}")

    for i, st in enumerate(program.body):
        env[st.target] = expr(st.value, i + 1)
    outputs = [env[n] for n in program.returns]
    for o in outputs:
        if g.kind[o] != T:
            raise ValueError(f"return value is a {_KIND_NAME[g.kind[o]]}, not a tensor")
    return g, inputs, outputs


def _reachable(g: Graph, roots: Sequence[int]) -> set[int]:
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(g.nodes[n].args)
    return seen


# ---------------------------------------------------------------------------------------------
# 2. Scalar program (numpy float64, the interpreter's scalar semantics)
# ---------------------------------------------------------------------------------------------

_NP_BIN = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power}


def _np_interp(x, y, a):
    return (1 - a) * x + a * y


_NP_FN: dict[str, Callable] = {
    "sign": np.sign, "abs": np.abs, "norm": np.abs, "rms": np.abs, "mean": lambda x: x,
    "sqrt": np.sqrt, "square": lambda x: x * x, "exp": np.exp, "log": np.log, "tanh": np.tanh,
    "clip": lambda x, c: np.minimum(np.maximum(x, -c), c), "maximum": np.maximum,
    "minimum": np.minimum, "interp": _np_interp,
}


class ScalarProgram:
    """Evaluates the group-constant nodes once per step; returns a list of Python floats."""

    def __init__(self, g: Graph, needed: Sequence[int], input_names: Sequence[str]):
        nodes = sorted(_reachable(g, needed))  # ids are topological: args are created first
        self.slot = {n: i for i, n in enumerate(nodes)}
        self.size = len(nodes)
        self.input_names = tuple(input_names)
        in_pos = {nm: i for i, nm in enumerate(self.input_names)}
        code = []
        for n in nodes:
            node, i = g.nodes[n], self.slot[n]
            args = tuple(self.slot[a] for a in node.args)
            if node.op == "in":
                code.append((i, "in", in_pos[node.value], ()))
            elif node.op == "num":
                code.append((i, "num", np.float64(node.value), ()))
            elif node.op == "neg":
                code.append((i, "neg", None, args))
            elif node.op in _NP_BIN:
                code.append((i, "fn", _NP_BIN[node.op], args))
            else:
                code.append((i, "fn", _NP_FN[node.op], args))
        self.code = code

    def __call__(self, inputs: Sequence[float]) -> list[float]:
        v: list = [None] * self.size
        with np.errstate(all="ignore"):
            for i, how, what, args in self.code:
                if how == "in":
                    v[i] = np.float64(inputs[what])
                elif how == "num":
                    v[i] = what
                elif how == "neg":
                    v[i] = -v[args[0]]
                else:
                    v[i] = what(*[v[a] for a in args])
        return [float(x) for x in v]


# ---------------------------------------------------------------------------------------------
# 3. Lowering to foreach instructions
# ---------------------------------------------------------------------------------------------

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
def _fe(name: str):
    return getattr(torch, f"_foreach_{name}"), getattr(torch, f"_foreach_{name}_", None)


_UNARY = ("neg", "abs", "sign", "sqrt", "exp", "log", "tanh", "reciprocal")


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
        if op in _UNARY:
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


# ---------------------------------------------------------------------------------------------
# 4. Scheduling, storage, and the runtime closures
# ---------------------------------------------------------------------------------------------

def _schedule(instrs: list[Instr], n_inputs: int) -> list[Instr]:
    """Topological order preferring earlier statements (then emission order)."""
    producer = {ins.out: i for i, ins in enumerate(instrs)}
    deps = [{producer[v] for v in ins.ins if v in producer} for ins in instrs]
    users: list[list[int]] = [[] for _ in instrs]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    missing = [len(d) for d in deps]
    heap = [(ins.prio, i) for i, ins in enumerate(instrs) if not deps[i]]
    heapq.heapify(heap)
    order = []
    while heap:
        _, i = heapq.heappop(heap)
        order.append(instrs[i])
        for j in users[i]:
            missing[j] -= 1
            if missing[j] == 0:
                heapq.heappush(heap, (instrs[j].prio, j))
    assert len(order) == len(instrs)
    return order


@dataclass
class BucketPlan:
    """What runs per bucket: ``run(W, G, states, scalar_inputs)``; see module docstring."""
    program: Program
    scalars: ScalarProgram
    scalar_input_names: tuple[str, ...]
    ops: list = field(default_factory=list)  # (closure, registers to free after it)
    ops_scratch: list = field(default_factory=list)  # the same, temporaries in scratch buffers
    n_regs: int = 0
    n_inputs: int = 0
    n_scratch: int = 0  # scratch tensors per parameter that ops_scratch needs
    listing: list[str] = field(default_factory=list)  # human-readable plan (for debugging)
    # the compiled form itself, for code generation (dsl.export): scheduled instructions,
    # the scratch slot of each out-of-place tensor instruction, input name -> value id, graph
    instrs: list = field(default_factory=list)
    slot_of: dict = field(default_factory=dict)
    input_vals: dict = field(default_factory=dict)
    graph: Graph | None = None

    def run(self, W: list[torch.Tensor], G: list[torch.Tensor], states: list[list[torch.Tensor]],
            scalar_inputs: Sequence[float], scratch: list[list[torch.Tensor]] | None = None) -> None:
        """One step of the rule on a bucket, in place (params and state buffers).

        ``scratch``: ``n_scratch`` lists of tensors shaped like W to hold the temporaries
        (reused from step to step), or None to allocate them (best where allocation is
        cheap, e.g. CUDA's caching allocator; on CPU, fresh multi-MB tensors page-fault
        on every step, which costs more than the foreach ops themselves).
        """
        sv = self.scalars(scalar_inputs)
        R: list = [None] * (self.n_regs + self.n_scratch)
        R[0] = W
        R[1] = G
        R[2:2 + len(states)] = states
        ops = self.ops
        if scratch is not None and self.n_scratch:
            R[self.n_regs:] = scratch
            ops = self.ops_scratch
        for fn, free in ops:
            fn(R, sv)
            for r in free:
                R[r] = None

    @property
    def elementwise(self) -> bool:
        """Every instruction acts element by element (no reduction, no per-tensor scalar, no
        matrix primitive), so the plan may run on any partition of its tensors into pieces."""
        return all(ins.kind == T and ins.op != "matrix" for ins in self.instrs)

    def run_tiled(self, W: list[torch.Tensor], G: list[torch.Tensor], states: list[list[torch.Tensor]],
                  scalar_inputs: Sequence[float], scratch: list[torch.Tensor], tile: int) -> bool:
        """``run`` one cache-sized tile at a time (elementwise plans, contiguous tensors; CPU).

        A foreach plan makes one pass over memory per instruction (AdamW: 8). On CPU with
        large tensors every pass streams the whole bucket from DRAM, and bandwidth, not
        arithmetic, sets the step time. Here the bucket's tensors are cut into flat pieces
        packed into tiles of ``tile`` elements, and all the instructions run on one tile
        (lists of views) before the next, so the intermediate passes hit the cache.
        ``scratch``: ``n_scratch`` flat tensors of at least ``tile`` elements (the bucket's
        dtype and device), the temporaries of every tile: memory ``n_scratch * tile``
        instead of ``n_scratch`` copies of the parameters. The same instructions on the
        same elements: bit-identical to ``run``. Returns False, doing nothing, where it
        does not apply (reductions or matrix primitives; non-contiguous tensors).
        """
        if not self.elementwise or len(scratch) < self.n_scratch:
            return False
        arrays = [W, G, *states]
        for lst in arrays:
            for t in lst:
                if not t.is_contiguous():
                    return False
        sv = self.scalars(scalar_inputs)
        flat = [[t.view(-1) for t in lst] for lst in arrays]
        scratch = [sc.view(-1) for sc in scratch[:self.n_scratch]]
        n_regs, ops = self.n_regs, self.ops_scratch
        pieces: list[tuple[int, int, int]] = []
        filled = 0

        def flush() -> None:
            R: list = [None] * (n_regs + len(scratch))
            for k, fl in enumerate(flat):
                R[k] = [fl[i][a:b] for i, a, b in pieces]
            for k, sc in enumerate(scratch):
                views, o = [], 0
                for _, a, b in pieces:
                    views.append(sc[o:o + b - a])
                    o += b - a
                R[n_regs + k] = views
            for fn, free in ops:
                fn(R, sv)
                for r in free:
                    R[r] = None

        for i, t in enumerate(W):
            n, a = t.numel(), 0
            while a < n:
                b = min(n, a + tile - filled)
                pieces.append((i, a, b))
                filled += b - a
                a = b
                if filled >= tile:
                    flush()
                    pieces, filled = [], 0
        if pieces:
            flush()
        return True

    def describe(self) -> str:
        return "\n".join(self.listing)


_SCRATCHABLE = set(_UNARY) | {"add_s", "sub_s", "mul_s", "div_s", "pow_s", "maximum_s", "minimum_s", "add",
                               "sub", "mul", "div", "pow", "maximum", "minimum", "addcmul", "addcdiv",
                               "lerp", "lerp_t", "clone"}


def _scratch_closure(ins: Instr, reg: dict[int, int], slot: dict[int, int], sreg: int) -> Callable:
    """An out-of-place instruction computed into the scratch list R[sreg]: copy the first
    operand there, then run the in-place variant (one extra pass, no allocation)."""
    if ins.op == "clone":
        a, o = reg[ins.ins[0]], reg[ins.out]

        def fn(R, S):
            torch._foreach_copy_(R[sreg], R[a])
            R[o] = R[sreg]
        return fn
    inner = _closure(ins, reg, slot, in_place_on=sreg)
    a = reg[ins.ins[0]]

    def fn(R, S):
        torch._foreach_copy_(R[sreg], R[a])
        inner(R, S)
    return fn


def _matrix_fresh(prim: str, t: torch.Tensor) -> torch.Tensor:
    """A matrix primitive's result in storage of its own.

    Below 2-D the primitives are the identity and the reference returns its argument; the
    plan's storage allocation treats a "matrix" result as a new tensor (it may later write
    into it, or reuse the argument's buffer), so an aliased result is copied."""
    out = _ref_call(prim, [t])
    return t.clone() if out is t else out


def _closure(ins: Instr, reg: dict[int, int], slot: dict[int, int], in_place_on: int | None = None) -> Callable:
    """The runtime function of one instruction: reads/writes registers R, scalars S.

    ``in_place_on``: run the in-place variant on register ``in_place_on`` (holding a copy of
    the first operand) instead of the out-of-place one."""
    if in_place_on is not None:
        ins = Instr(ins.op, list(ins.ins), list(ins.sc), ins.out, ins.kind, ins.prio, ins.inplace,
                    ins.extra, dest=0)
        reg = dict(reg)
        reg[ins.ins[0]] = in_place_on
    op, d = ins.op, ins.dest
    r = [reg[v] for v in ins.ins]
    s = [slot[c] for c in ins.sc]
    o = reg[ins.out]
    if op in _UNARY:
        f, f_ = _fe(op)
        a = r[0]
        if d is None:
            def fn(R, S):
                R[o] = f(R[a])
        else:
            def fn(R, S):
                f_(R[a])
                R[o] = R[a]
        return fn
    if op in ("add_s", "sub_s", "mul_s", "div_s", "pow_s", "maximum_s", "minimum_s"):
        f, f_ = _fe(op[:-2])
        a, k = r[0], s[0]
        if d is None:
            def fn(R, S):
                R[o] = f(R[a], S[k])
        else:
            def fn(R, S):
                f_(R[a], S[k])
                R[o] = R[a]
        return fn
    if op == "rpow_s":
        a, k = r[0], s[0]

        def fn(R, S):
            R[o] = torch._foreach_pow(S[k], R[a])
        return fn
    if op in ("add", "sub", "mul", "div", "pow", "maximum", "minimum"):
        f, f_ = _fe(op)
        a, b = r
        if d == 1:
            assert not s, "add with alpha is not commutative"
            a, b = b, a  # commutative ops only list 1 as a destination
        if op == "add" and s:
            k = s[0]
            if d is None:
                def fn(R, S):
                    R[o] = f(R[a], R[b], alpha=S[k])
            else:
                def fn(R, S):
                    f_(R[a], R[b], alpha=S[k])
                    R[o] = R[a]
            return fn
        if d is None:
            def fn(R, S):
                R[o] = f(R[a], R[b])
        else:
            def fn(R, S):
                f_(R[a], R[b])
                R[o] = R[a]
        return fn
    if op in ("addcmul", "addcdiv"):
        f, f_ = _fe(op)
        a, b, c = r
        if s:
            k = s[0]
            if d is None:
                def fn(R, S):
                    R[o] = f(R[a], R[b], R[c], S[k])
            else:
                def fn(R, S):
                    f_(R[a], R[b], R[c], S[k])
                    R[o] = R[a]
        else:
            if d is None:
                def fn(R, S):
                    R[o] = f(R[a], R[b], R[c])
            else:
                def fn(R, S):
                    f_(R[a], R[b], R[c])
                    R[o] = R[a]
        return fn
    if op == "lerp":
        a, b = r
        kw, k1 = s
        if d is None:
            def fn(R, S):
                R[o] = torch._foreach_lerp(R[a], R[b], S[kw])
        elif d == 0:
            def fn(R, S):
                torch._foreach_lerp_(R[a], R[b], S[kw])
                R[o] = R[a]
        else:  # x + a (y - x) == y + (1 - a) (x - y): in place into y
            def fn(R, S):
                torch._foreach_lerp_(R[b], R[a], S[k1])
                R[o] = R[b]
        return fn
    if op == "lerp_t":
        a, b, c = r
        if d is None:
            def fn(R, S):
                R[o] = torch._foreach_lerp(R[a], R[b], R[c])
        else:
            def fn(R, S):
                torch._foreach_lerp_(R[a], R[b], R[c])
                R[o] = R[a]
        return fn
    if op == "norm":
        a = r[0]

        def fn(R, S):
            R[o] = list(torch._foreach_norm(R[a]))
        return fn
    if op == "rms":  # sqrt(mean(x^2)) = norm(x) / sqrt(numel)
        a = r[0]

        def fn(R, S):
            X = R[a]
            out = list(torch._foreach_norm(X))
            torch._foreach_mul_(out, [t.numel() ** -0.5 for t in X])
            R[o] = out
        return fn
    if op == "mean":
        a = r[0]

        def fn(R, S):
            R[o] = [t.mean() for t in R[a]]
        return fn
    if op == "matrix":
        a, prim = r[0], ins.extra

        def fn(R, S):
            R[o] = [_matrix_fresh(prim, t) for t in R[a]]
        return fn
    if op == "copy":
        a, b = r  # copy b into the buffer list a

        def fn(R, S):
            torch._foreach_copy_(R[a], R[b])
        return fn
    if op == "clone":
        a = r[0]

        def fn(R, S):
            R[o] = list(torch._foreach_clone(R[a]))
        return fn
    raise AssertionError(f"no runtime for {op}")


def compile_plan(program: Program) -> BucketPlan:
    """Compile ``program`` into a BucketPlan (see the module docstring)."""
    g, inputs, outputs = build_graph(program)
    reach = _reachable(g, outputs)
    uses: dict[int, int] = {}
    for n in reach:
        for a in g.nodes[n].args:
            uses[a] = uses.get(a, 0) + 1
    for o in outputs:
        uses[o] = uses.get(o, 0) + 1

    low = Lowering(g, uses)
    # registers 0, 1, 2.. hold the buffers: w, g, then the state tensors in signature order
    storages = ["w", "g", *program.state_names]
    in_value: dict[int, int] = {}
    input_vals: dict[str, int] = {}
    for name in storages:  # the parser guarantees w, g and every state are in the signature
        v = input_vals[name] = low.new_value(T)
        in_value[inputs[name]] = v
    low.input_value = lambda n: in_value[n]  # type: ignore[method-assign]
    low.memo.update(in_value)

    # lower in statement order so every statement's instructions get its priority
    for n in sorted(reach, key=lambda n: (g.prio[n], n)):
        if g.kind[n] != C and g.nodes[n].op != "in" and uses.get(n, 0) != 1:
            low.L(n)
    finals = [low.L(o) for o in outputs]
    instrs = _schedule(low.instrs, len(storages))

    # ---- storage allocation: in place where the operand is dead afterwards ----
    INF = 1 << 30
    last = {v: -1 for v in range(low.n_values)}
    for pos, ins in enumerate(instrs):
        for v in ins.ins:
            last[v] = pos
    out_names = list(program.returns)  # ("w", states...)
    final_of = {}
    for name, v in zip(out_names, finals):
        last[v] = INF
        final_of.setdefault(v, name)
    # where each value should preferably live: its buffer if it is a final value, else the
    # place of the value it is updated into in place (a chain of single-use in-place updates)
    destined: dict[int, str] = {}
    n_uses: dict[int, int] = {}
    for ins in instrs:
        for v in set(ins.ins):
            n_uses[v] = n_uses.get(v, 0) + 1
    for ins in reversed(instrs):
        d = final_of.get(ins.out, destined.get(ins.out))
        if d is None:
            continue
        destined.setdefault(ins.out, d)
        for idx in ins.inplace:
            v = ins.ins[idx]
            if n_uses.get(v) == 1 and v not in final_of:
                destined.setdefault(v, d)
    storage: dict[int, str] = {v: name for name, v in input_vals.items()}
    tmp = 0
    for pos, ins in enumerate(instrs):
        best, best_rank = None, None
        for idx in ins.inplace:
            v = ins.ins[idx]
            st = storage[v]
            if last[v] != pos or st == "g" or low.kind_of[v] != ins.kind:
                continue
            target = destined.get(ins.out)
            rank = 0 if st == target else (1 if st.startswith("~") else 2)
            if best_rank is None or rank < best_rank:
                best, best_rank = idx, rank
        ins.dest = best
        if best is None:
            storage[ins.out] = f"~{tmp}"
            tmp += 1
        else:
            storage[ins.out] = storage[ins.ins[best]]

    # ---- final values into their buffers ----
    moves = [(name, v) for name, v in zip(out_names, finals) if storage[v] != name]
    dests = {name for name, _ in moves}
    fix: list[Instr] = []
    src = {}
    for name, v in moves:
        if storage[v] in dests and v not in src:  # its buffer is overwritten by another copy
            c = low.new_value(T)
            fix.append(Instr("clone", [v], [], c, T, 0))
            src[v] = c
    for name, v in moves:
        fix.append(Instr("copy", [input_vals[name], src.get(v, v)], [], low.new_value(T), T, 0))
    instrs += fix

    # ---- registers, scalar slots, closures, frees ----
    reg = {v: v for v in range(low.n_values)}
    needed_c = sorted({c for ins in instrs for c in ins.sc})
    scalar_names = [a.name for a in program.args if g.kind[inputs[a.name]] == C]
    sp = ScalarProgram(g, needed_c, scalar_names)
    last_pos: dict[int, int] = {}
    for pos, ins in enumerate(instrs):
        for v in ins.ins:
            last_pos[v] = pos
        last_pos.setdefault(ins.out, pos)
    protected = set(input_vals.values())
    frees: list[list[int]] = [[] for _ in instrs]
    for v, pos in last_pos.items():
        if v not in protected:
            frees[pos].append(v)
    # ---- scratch buffers for the temporaries (CPU): interval colouring of temp storages ----
    for ins in instrs:
        if ins.op == "clone":
            storage[ins.out] = f"~c{ins.out}"
    busy_until: dict[str, int] = {}
    for v, pos in last_pos.items():
        st_ = storage.get(v, "")
        if st_.startswith("~"):
            busy_until[st_] = max(busy_until.get(st_, -1), pos)
    slot_of: dict[int, int] = {}  # instruction position -> scratch slot
    slot_free_after: list[int] = []
    for pos, ins in enumerate(instrs):
        if ins.dest is None and ins.kind == T and ins.op in _SCRATCHABLE:
            free = [k for k, until in enumerate(slot_free_after) if until < pos]
            k = free[0] if free else len(slot_free_after)
            if not free:
                slot_free_after.append(-1)
            slot_free_after[k] = busy_until.get(storage[ins.out], pos)
            slot_of[pos] = k

    plan = BucketPlan(program, sp, tuple(scalar_names), n_regs=low.n_values, n_inputs=len(storages),
                      n_scratch=len(slot_free_after), instrs=instrs, slot_of=slot_of,
                      input_vals=dict(input_vals), graph=g)
    names = {v: n for n, v in input_vals.items()}
    for pos, ins in enumerate(instrs):
        plan.ops.append((_closure(ins, reg, sp.slot), tuple(frees[pos])))
        sc_fn = (_scratch_closure(ins, reg, sp.slot, low.n_values + slot_of[pos]) if pos in slot_of
                 else plan.ops[-1][0])
        plan.ops_scratch.append((sc_fn, tuple(frees[pos])))
        where = "new" if ins.dest is None else f"in place into {storage.get(ins.ins[ins.dest], '?')}"
        if pos in slot_of:
            where += f", or scratch {slot_of[pos]}"
        args = ", ".join(names.get(v, f"%{v}") for v in ins.ins)
        if ins.op == "matrix":
            args = f"{ins.extra}: {args}"
        plan.listing.append(f"%{ins.out} = {ins.op}({args}{'; ' if ins.sc else ''}"
                            f"{', '.join(f'c{c}' for c in ins.sc)})  [{where}]")
    return plan


# ---------------------------------------------------------------------------------------------
# The functional form, for torch.compile
# ---------------------------------------------------------------------------------------------

def _f_interp(x, y, a):
    if x.dim() > 0 and x.shape == y.shape and x.dtype == y.dtype:
        return torch.lerp(x, y, a.to(x.dtype) if isinstance(a, torch.Tensor) else a)
    return (1 - a) * x + a * y


_F_OPS: dict[str, Callable] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
    "**": torch.pow, "neg": lambda a: -a, "sign": torch.sign, "abs": torch.abs, "sqrt": torch.sqrt,
    "square": lambda a: a * a, "exp": torch.exp, "log": torch.log, "tanh": torch.tanh,
    "clip": lambda x, c: torch.minimum(torch.maximum(x, -c), c), "maximum": torch.maximum,
    "minimum": torch.minimum, "interp": _f_interp, "norm": lambda x: torch.linalg.vector_norm(x),
    "rms": lambda x: torch.linalg.vector_norm(x) * x.numel() ** -0.5, "mean": lambda x: x.mean(),
    "orthogonalize": lambda x: _matrix_fresh("orthogonalize", x),
    "row_normalize": lambda x: _matrix_fresh("row_normalize", x),
    "col_normalize": lambda x: _matrix_fresh("col_normalize", x),
}


@dataclass
class FunctionalPlan:
    """The rule as out-of-place per-tensor torch ops over the graph, written back with copy_.

    Meant to be traced by torch.compile (which fuses it into a few kernels per tensor): the
    step's scalars arrive as one float64 tensor, so new lr or step values do not recompile.
    Run eagerly it would be slow (one Python loop per tensor); the eager path is BucketPlan.
    """
    program: Program
    scalars: ScalarProgram
    scalar_input_names: tuple[str, ...]
    order: list[tuple[int, str, tuple[int, ...]]]  # (node, op, args) of tensor/per-tensor nodes
    c_index: dict[int, int]                          # C node -> index into the scalar tensor
    inputs: dict[int, int]                           # input node -> 0 (w), 1 (g), 2.. (states)
    outputs: list[tuple[int, int, bool]]             # (buffer 0 / 2.., node, clone first)

    def run(self, W, G, states, scalar_inputs) -> None:
        sv = self.scalars(scalar_inputs)
        svt = torch.tensor([sv[i] for i in self.c_slots], dtype=torch.float64)
        self.apply(W, G, states, svt.to(W[0].device))

    def apply(self, W, G, states, svt: torch.Tensor) -> None:
        lists = [W, G, *states]
        cs = {n: svt[i] for n, i in self.c_index.items()}
        for i in range(len(W)):
            v: dict[int, torch.Tensor] = dict(cs)
            for n, k in self.inputs.items():
                v[n] = lists[k][i]
            for n, op, args in self.order:
                v[n] = _F_OPS[op](*[v[a] for a in args])
            new = [(lists[k][i], v[n].clone() if clone else v[n]) for k, n, clone in self.outputs]
            for buf, val in new:
                if val is not buf:
                    buf.copy_(val)


def compile_functional(program: Program) -> FunctionalPlan:
    g, inputs, outputs = build_graph(program)
    reach = _reachable(g, outputs)
    order = [(n, g.nodes[n].op, g.nodes[n].args) for n in sorted(reach)
             if g.kind[n] != C and g.nodes[n].op != "in"]
    c_nodes = sorted({a for _, _, args in order for a in args if g.kind[a] == C})
    scalar_names = [a.name for a in program.args if g.kind[inputs[a.name]] == C]
    sp = ScalarProgram(g, c_nodes, scalar_names)
    storages = ["w", "g", *program.state_names]
    in_map = {inputs[name]: k for k, name in enumerate(storages)}
    outs = []
    for name, n in zip(program.returns, outputs):
        k = storages.index(name)
        node = g.nodes[n]
        outs.append((k, n, node.op == "in" and node.value != name))
    plan = FunctionalPlan(program, sp, tuple(scalar_names), order, {n: i for i, n in enumerate(c_nodes)},
                          in_map, outs)
    plan.c_slots = [sp.slot[n] for n in c_nodes]  # type: ignore[attr-defined]
    return plan
