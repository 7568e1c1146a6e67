"""Stage 4, scheduling and storage: ``compile_plan(program) -> BucketPlan``.

Instructions run in statement order where the data flow allows; an instruction writes in
place into an operand whose value is dead afterwards (a temporary, or the parameter / a state
buffer whose old value is no longer read). The gradient is never written. Final values that
did not land in their buffer are copied. Temporaries get scratch slots by interval colouring.
"""
from __future__ import annotations

import heapq

from ..program import Program
from .graph import C, T, build_graph, reachable
from .lowering import Instr, Lowering
from .runtime import SCRATCHABLE, BucketPlan, closure, scratch_closure
from .scalars import ScalarProgram


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


def compile_plan(program: Program) -> BucketPlan:
    """Compile ``program`` into a BucketPlan (see the module docstring)."""
    g, inputs, outputs = build_graph(program)
    reach = reachable(g, outputs)
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
    for _, v in moves:
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
        if ins.dest is None and ins.kind == T and ins.op in SCRATCHABLE:
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
        plan.ops.append((closure(ins, reg, sp.slot), tuple(frees[pos])))
        sc_fn = (scratch_closure(ins, reg, sp.slot, low.n_values + slot_of[pos]) if pos in slot_of
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
