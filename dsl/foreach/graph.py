"""Stage 1, the graph: the rule's body as a hash-consed DAG in SSA form.

Every node has a kind: ``C`` (a group constant: numbers, lr, wd, step, hyperparameters and
functions of them), ``S`` (one scalar per parameter tensor, from a reduction) or ``T`` (a
tensor per parameter). Common subexpressions are merged by construction.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..primitives import PRIMITIVES
from ..program import BinOp, Call, Expr, Name, Neg, Num, Program

C, S, T = 0, 1, 2  # kinds, ordered: combining kinds takes the max
KIND_NAME = {C: "const", S: "per-tensor scalar", T: "tensor"}
_BINOPS = ("+", "-", "*", "/", "**")


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
            raise ValueError(f"return value is a {KIND_NAME[g.kind[o]]}, not a tensor")
    return g, inputs, outputs


def reachable(g: Graph, roots: Sequence[int]) -> set[int]:
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(g.nodes[n].args)
    return seen
