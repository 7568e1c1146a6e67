"""The runtime: ``BucketPlan`` (what every ``step()`` runs per bucket) and the closures, one
per instruction, that call ``torch._foreach_*``."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..interpret import call as _ref_call
from ..optim_base import tile_views
from ..program import Program
from .graph import Graph, T
from .lowering import UNARY, Instr
from .scalars import ScalarProgram


def _fe(name: str):
    return getattr(torch, f"_foreach_{name}"), getattr(torch, f"_foreach_{name}_", None)


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
                  scalar_inputs: Sequence[float], scratch: list[torch.Tensor], tile: int) -> None:
        """``run`` one cache-sized tile at a time (elementwise plans, contiguous tensors; CPU).

        A foreach plan makes one pass over memory per instruction (AdamW: 8). On CPU with
        large tensors every pass streams the whole bucket from DRAM, and bandwidth, not
        arithmetic, sets the step time. Here the bucket's tensors are cut into flat pieces
        packed into tiles of ``tile`` elements, and all the instructions run on one tile
        (lists of views) before the next, so the intermediate passes hit the cache.
        ``scratch``: ``n_scratch`` flat tensors of at least ``tile`` elements (the bucket's
        dtype and device), the temporaries of every tile: memory ``n_scratch * tile``
        instead of ``n_scratch`` copies of the parameters. The same instructions on the
        same elements: bit-identical to ``run``. The caller checks that it applies
        (``elementwise``, contiguous tensors; RuleOptimizer._update does).
        """
        sv = self.scalars(scalar_inputs)
        scratch = [sc.view(-1) for sc in scratch[:self.n_scratch]]
        n_regs, ops = self.n_regs, self.ops_scratch
        for views, sviews in tile_views([W, G, *states], scratch, tile):
            R: list = [None] * (n_regs + len(sviews))
            R[:len(views)] = views
            R[n_regs:] = sviews
            for fn, free in ops:
                fn(R, sv)
                for r in free:
                    R[r] = None

    def describe(self) -> str:
        return "\n".join(self.listing)


SCRATCHABLE = set(UNARY) | {"add_s", "sub_s", "mul_s", "div_s", "pow_s", "maximum_s", "minimum_s", "add",
                               "sub", "mul", "div", "pow", "maximum", "minimum", "addcmul", "addcdiv",
                               "lerp", "lerp_t", "clone"}


def scratch_closure(ins: Instr, reg: dict[int, int], slot: dict[int, int], sreg: int) -> Callable:
    """An out-of-place instruction computed into the scratch list R[sreg]: copy the first
    operand there, then run the in-place variant (one extra pass, no allocation)."""
    if ins.op == "clone":
        a, o = reg[ins.ins[0]], reg[ins.out]

        def fn(R, S):
            torch._foreach_copy_(R[sreg], R[a])
            R[o] = R[sreg]
        return fn
    inner = closure(ins, reg, slot, in_place_on=sreg)
    a = reg[ins.ins[0]]

    def fn(R, S):
        torch._foreach_copy_(R[sreg], R[a])
        inner(R, S)
    return fn


def matrix_fresh(prim: str, t: torch.Tensor) -> torch.Tensor:
    """A matrix primitive's result in storage of its own.

    Below 2-D the primitives are the identity and the reference returns its argument; the
    plan's storage allocation treats a "matrix" result as a new tensor (it may later write
    into it, or reuse the argument's buffer), so an aliased result is copied."""
    out = _ref_call(prim, [t])
    return t.clone() if out is t else out


def closure(ins: Instr, reg: dict[int, int], slot: dict[int, int], in_place_on: int | None = None) -> Callable:
    """The runtime function of one instruction: reads/writes registers R, scalars S.

    ``in_place_on``: run the in-place variant on register ``in_place_on`` (holding a copy of
    the first operand) instead of the out-of-place one.

    Each arity and form (out of place, in place) has its own closure written out, so that a
    step only indexes registers and calls torch: the near-identical ``fn`` bodies below are
    deliberate (no argument lists built or branches taken per call)."""
    if in_place_on is not None:
        ins = Instr(ins.op, list(ins.ins), list(ins.sc), ins.out, ins.kind, ins.prio, ins.inplace,
                    ins.extra, dest=0)
        reg = dict(reg)
        reg[ins.ins[0]] = in_place_on
    op, d = ins.op, ins.dest
    r = [reg[v] for v in ins.ins]
    s = [slot[c] for c in ins.sc]
    o = reg[ins.out]
    if op in UNARY:
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
            R[o] = [matrix_fresh(prim, t) for t in R[a]]
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
