"""Compile a Program ONCE into a multi-tensor plan: a list of ``torch._foreach_*`` calls.

The plan is what ``dsl.compile.to_optimizer`` runs on every step, for each bucket of
parameters (same device, dtype and step count). No AST is looked at on the hot path.

Stages (all at class-creation time):

1. **Graph** (``graph``). The body becomes a DAG in SSA form with common subexpressions merged. Every
   node has a kind: ``C`` (a group constant: a function of numbers, lr, wd, step and the
   hyperparameters, one value for the whole bucket), ``S`` (one scalar per parameter tensor,
   from a reduction: a list of 0-dim tensors) or ``T`` (a tensor per parameter: a list).
2. **Scalar program** (``scalars``). The ``C`` nodes are evaluated once per step in numpy float64, exactly
   as the reference interpreter does (1/0 = inf, log(-1) = nan, no exceptions).
3. **Lowering with fusion** (``lowering``). ``S``/``T`` nodes become foreach instructions. Constant factors
   are hoisted out of products and quotients (``lr * (m / c) / d`` -> ``(lr / c) * (m / d)``)
   and folded into the fused forms torch offers:
   ``a + c*b -> add(a, b, alpha=c)``, ``a + c*(b*d) -> addcmul``, ``a + c*(b/d) -> addcdiv``,
   ``interp(x, y, a) = x + a*(y - x) -> lerp(x, y, a)`` (or, in place into ``y``,
   ``lerp_(y, x, 1 - a)``), ``interp(b*d, y, a) -> mul_(y, a); addcmul_(y, b, d, 1 - a)``.
   Hoisting changes rounding (not the math): results match the interpreter to ~1e-15.
4. **Scheduling and storage** (``plan``: ``compile_plan``). Instructions run in statement order where the data flow
   allows; an instruction writes in place into an operand whose value is dead afterwards
   (a temporary, or the parameter / a state buffer whose old value is no longer read). The
   gradient is never written. Final values that did not land in their buffer are copied.

Matrix primitives (orthogonalize, row/col_normalize) loop over tensors, reusing the
reference implementation: they are per-matrix work anyway.

``runtime`` holds ``BucketPlan`` (what a step runs) and the per-instruction closures;
``functional`` the out-of-place form that ``to_optimizer(compile=True)`` hands to torch.compile.
"""
from __future__ import annotations

from .functional import FunctionalPlan, compile_functional
from .graph import C, Graph, Node, S, T, build_graph, reachable
from .lowering import Instr, Lowering
from .plan import compile_plan
from .runtime import BucketPlan
from .scalars import ScalarProgram

__all__ = ["compile_plan", "compile_functional", "BucketPlan", "FunctionalPlan", "Graph", "Node", "Instr",
           "Lowering", "ScalarProgram", "build_graph", "reachable", "C", "S", "T"]
