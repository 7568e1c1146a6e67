"""Stage 2, the scalar program: the group-constant nodes, evaluated once per step in numpy
float64 exactly as the reference interpreter does (1/0 = inf, log(-1) = nan, no exceptions)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .graph import Graph, reachable

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
        nodes = sorted(reachable(g, needed))  # ids are topological: args are created first
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
