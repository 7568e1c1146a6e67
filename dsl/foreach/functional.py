"""The functional form of a rule, for ``torch.compile``: out-of-place per-tensor ops over the graph."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..program import Program
from .graph import C, build_graph, reachable
from .runtime import matrix_fresh
from .scalars import ScalarProgram


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
    "orthogonalize": lambda x: matrix_fresh("orthogonalize", x),
    "row_normalize": lambda x: matrix_fresh("row_normalize", x),
    "col_normalize": lambda x: matrix_fresh("col_normalize", x),
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
    reach = reachable(g, outputs)
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
