"""``export_python(program, class_name) -> str``: a rule as a standalone, readable module.

The module depends only on torch (and math). It defines the DSL's primitives as small
documented functions, an ``update`` function whose body is the rule itself, one Python
line per DSL statement (scalars are 0-dim float64 tensors, so scalar math follows IEEE
rules as in the DSL: 1/0 = inf, sqrt(-1) = nan, never an exception), and a
``torch.optim.Optimizer`` subclass whose docstring is the rule's source.

For speed, the optimizer's ``step`` runs ``foreach_apply``: the multi-tensor plan that
``dsl.foreach`` compiles from the rule (fused, in-place ``torch._foreach_*`` calls),
written out as straight-line Python with each DSL statement as a comment, after
``step_scalars`` computed the step's numbers once; on CPU, elementwise rules run it tile by
tile as ``dsl.to_optimizer`` does (see ``dsl.foreach.BucketPlan.run_tiled``). Its
constructor, param groups and ``state_dict`` are those of ``dsl.to_optimizer``'s class
for the same rule: a checkpoint written by one loads into the other, and both follow the
same trajectory (to rounding: the scalars are computed by torch here, by numpy there).
"""
from __future__ import annotations

from .compile import check_hyper_names, range_table, rule_program
from .export_parts import (
    BASE_IMPORTS,
    BASE_NAMES,
    EXPORT_RESERVED,
    HELPERS,
    NP_BIN,
    indent,
    number_text,
    optimizer_class_text,
    pynames,
    python_safe,
    rename_expr,
)
from .export_shaped import check_shaped_names, export_shaped
from .fingerprint import fingerprint
from .foreach import compile_plan
from .kinds import extensions
from .primitives import PRIMITIVES
from .program import (
    Call,
    Program,
    format_expr,
    walk,
)

__all__ = ["export_python"]

#: the exported elementwise class's own methods (the foreach plan written out above them)
_ELEMENTWISE_METHODS = """
    def _scalars(self, env):
        return step_scalars(*[env[n] for n in SCALAR_INPUTS])

    def _apply(self, W, G, states, scalars, scratch):
        foreach_apply(W, G, *states, scratch, scalars)

    def _apply_tiled(self, W, G, states, scalars, scratch, tile):
        _run_tiled([W, G, *states], scratch, scalars, tile)
"""


def _foreach_code(program: Program, rename: dict[str, str]) -> tuple[list[str], list[str], list[str], int, bool]:
    """dsl.foreach's compiled plan written out as Python: (the scalar lines of
    step_scalars, the names it returns, the body of foreach_apply (one torch._foreach_*
    call per line, each DSL statement as a comment above its calls), n_scratch, whether
    the plan is elementwise)."""
    r = lambda n: rename.get(n, n)  # noqa: E731
    plan = compile_plan(program)
    g, sp = plan.graph, plan.scalars
    sname = {n: f"s{i}" for n, i in sp.slot.items()}
    lines = ["# the step's scalars, in float64 (0-dim tensors, so that 1/0 = inf as in the DSL)"]
    for n in sorted(sp.slot):  # node ids are in dependency order
        node = g.nodes[n]
        a = [sname[x] for x in node.args]
        if node.op == "in":
            expr = f"_t({r(node.value)})"
        elif node.op == "num":
            expr = f"_t({number_text(node.value)})"
        elif node.op == "neg":
            expr = f"-{a[0]}"
        elif node.op in NP_BIN:
            expr = f"{a[0]} {node.op} {a[1]}"
        else:
            expr = f"{node.op}({', '.join(a)})"
        lines.append(f"{sname[n]} = {expr}")
    used = sorted({c for ins in plan.instrs for c in ins.sc}, key=lambda c: sp.slot[c])
    scalar_lines, returned = lines, [sname[c] for c in used]
    lines = []
    name_of = {v: r(n) for n, v in plan.input_vals.items()}
    W = r("w")
    stmt = None
    for pos, ins in enumerate(plan.instrs):
        if ins.prio != stmt:
            stmt = ins.prio
            if stmt:
                st = program.body[stmt - 1]
                lines.append(f"# {r(st.target)} = {format_expr(rename_expr(st.value, rename))}")
            else:
                lines.append("# final values into their buffers")
        x = [name_of[v] for v in ins.ins]
        sc = [sname[c] for c in ins.sc]
        op, d = ins.op, ins.dest
        if op == "copy":
            lines.append(f"torch._foreach_copy_({x[0]}, {x[1]})")
            continue
        if d is None and pos in plan.slot_of:  # a temporary: in scratch (or new) tensors
            k = plan.slot_of[pos]
            lines.append(f"t{k} = _copy(scratch, {k}, {x[0]}, {W})")
            name_of[ins.out] = x[0] = f"t{k}"
            if op == "clone":
                continue
            d = 0
        base = "lerp" if op == "lerp_t" else (op[:-2] if op.endswith("_s") else op)
        if d is not None:  # in place
            if d == 1 and op != "lerp":  # commutative: the destination goes first
                x[0], x[1] = x[1], x[0]
            target = x[1] if op == "lerp" and d == 1 else x[0]
            fn = f"torch._foreach_{base}_"
        else:
            target = f"v{ins.out}"
            fn = f"torch._foreach_{base}"
        name_of[ins.out] = target
        if op == "rpow_s":
            lines.append(f"{target} = list(torch._foreach_pow({sc[0]}, {x[0]}))")
        elif op == "norm":
            lines.append(f"{target} = list(torch._foreach_norm({x[0]}))")
        elif op == "rms":
            lines.append(f"{target} = list(torch._foreach_norm({x[0]}))  # rms = norm / sqrt(numel)")
            lines.append(f"torch._foreach_mul_({target}, [t.numel() ** -0.5 for t in {x[0]}])")
        elif op == "mean":
            lines.append(f"{target} = [t.mean() for t in {x[0]}]")
        elif op == "matrix":
            lines.append(f"{target} = [{ins.extra}(t) for t in {x[0]}]")
        else:
            if op == "lerp":
                args = [x[1], x[0], sc[1]] if d == 1 else [x[0], x[1], sc[0]]
            else:
                args = list(x)
                if sc:
                    args.append(f"alpha={sc[0]}" if op == "add" else sc[0])
            call = f"{fn}({', '.join(args)})"
            lines.append(call if d is not None else f"{target} = list({call})")
    return scalar_lines, returned, lines, plan.n_scratch, plan.elementwise


def export_python(program: Program | str, class_name: str) -> str:
    """Source text of a standalone module defining ``class_name`` (see the module docstring)."""
    program = rule_program(program)
    check_hyper_names(program)
    if not class_name.isidentifier() or class_name in EXPORT_RESERVED or class_name.startswith("_") \
            or class_name in ("RULE", "FINGERPRINT", "HYPERPARAMETERS", "STATE", "N_SCRATCH", "ELEMENTWISE",
                              "RANGES", "SCALAR_INPUTS") or class_name in BASE_NAMES:
        raise ValueError(f"class_name {class_name!r} must be a Python identifier, not starting with '_' "
                         "and not a name the module defines itself (torch, update, RULE, ...)")
    if extensions(program):  # shapes: one parameter at a time, no foreach plan
        check_shaped_names(class_name)
        return export_shaped(program, class_name)
    source = program.source()
    hyper = program.hyperparams
    states = program.state_names

    bad = sorted(h for h in hyper if h in ("defaults", "FINGERPRINT", "RULE", "super") or h.startswith("__"))
    if bad:
        raise ValueError(f"cannot export: hyperparameter name(s) {', '.join(bad)} would shadow names the "
                         "exported constructor uses; rename them")

    rename = pynames(program)
    r = lambda n: rename.get(n, n)  # noqa: E731
    # the body of update(): the rule's statements, made safe for Python's own number rules
    folded: set[str] = set()
    body = [(r(s.target), python_safe(rename_expr(s.value, rename), folded)) for s in program.body]
    used_fns = sorted({n.fn for _, v in body for n in walk(v) if isinstance(n, Call)},
                      key=list(PRIMITIVES).index)
    needs = {c for c in ("inf", "nan") if any(c in f for f in folded)}
    sc_lines, sc_returned, fe_lines, n_scratch, elementwise = _foreach_code(program, rename)

    sig = ", ".join(r(a.name) for a in program.args)
    lines = [f"    {t} = {format_expr(v)}" for t, v in body]
    ret = ", ".join(r(n) for n in program.returns)
    scalar_inputs = [a.name for a in program.args if a.name in ("lr", "wd", "step") or a.default is not None]
    sc_names = [r(n) for n in scalar_inputs]
    scalar_line = (f"    {', '.join(sc_names)}{',' if len(sc_names) == 1 else ''} = "
                   f"{', '.join(f'_t({n})' for n in sc_names)}{',' if len(sc_names) == 1 else ''}\n"
                   if sc_names else "")
    buf_names = ", ".join([r("w"), r("g"), *[r(s) for s in states]])
    fe_sig = ", ".join([buf_names, "scratch", *[r(n) for n in scalar_inputs]])
    sc_sig = ", ".join(r(n) for n in scalar_inputs)
    sc_body = "\n".join("    " + ln for ln in sc_lines)
    sc_ret = ", ".join(sc_returned) + ("," if len(sc_returned) == 1 else "")
    sc_ret_float = ", ".join(f"float({n})" for n in sc_returned) + ("," if len(sc_returned) == 1 else "")
    sc_unpack = f"    {sc_ret} = scalars\n" if sc_returned else ""
    scalar_pass = ", ".join(r(n) for n in scalar_inputs)
    fp = fingerprint(program)

    class_text = optimizer_class_text(class_name, source, hyper, ["N_SCRATCH = N_SCRATCH",
                                                                   "ELEMENTWISE = ELEMENTWISE"], _ELEMENTWISE_METHODS)
    ranges_text = "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in range_table(program).items()) + "}"
    rule_block = indent(source.rstrip("\n"), 4)
    state_list = ", ".join(states) if states else "none"
    consts = ""
    if needs:
        consts = "".join(f"{c} = math.{c}\n" for c in sorted(needs)) + "\n"
    helpers = "\n\n".join(HELPERS[f] for f in used_fns)
    if helpers:
        helpers = "\n\n" + helpers
    fe_body = "\n".join("    " + ln for ln in fe_lines)

    return f'''"""{class_name}: a torch.optim optimizer exported by optforge from this update rule:

{rule_block}

Read it as Python: w is the parameter, g its gradient, lr and wd the group's learning
rate and weight decay, step counts updates from 1, the state tensors ({state_list}) start
at zero, and interp(x, y, a) = (1 - a) * x + a * y.

This file depends only on torch. ``{class_name}(params, lr=..., weight_decay=..., ...)`` works
like any torch.optim optimizer: param groups, closures, LR schedulers, state_dict (per
parameter: ``step`` and the state tensors by name; hyperparameters in param_groups).
Arguments are checked at construction as torch.optim checks its own (RANGES: ValueError
naming the argument and its range); ``maximize``, ``foreach`` and complex parameters (through
``torch.view_as_real``) work as in torch.optim; ``capturable``, ``differentiable``, ``fused``
and sparse gradients are refused. That part is the RuleOptimizer class at the end, the same
code optforge's own compiled optimizers run.

``update`` below is the rule as written, for one tensor. ``{class_name}.step`` runs
``foreach_apply``: the same computation as compiled by optforge for speed, on all the
parameters of a group at once with torch._foreach_* calls, constant factors folded into
fused calls (lerp, addcmul, addcdiv), buffers updated in place, and temporaries kept in
reused scratch tensors on CPU (where fresh large float32/float64 tensors cost a page
fault per 4 KiB; bfloat16/float16 measured faster allocating). On CPU, rules without
reductions or matrix primitives run tile by tile (TILE elements at a time) so that the
passes of the foreach calls stay in cache (float32 and float64 parameters: with bfloat16
the tiles measured slower).
"""
{BASE_IMPORTS}

RULE = {source!r}
FINGERPRINT = {fp!r}  # optforge's functional hash of the rule
HYPERPARAMETERS = {dict(hyper)!r}
STATE = {tuple(states)!r}
N_SCRATCH = {n_scratch}  # scratch tensors per parameter that foreach_update uses
ELEMENTWISE = {elementwise!r}  # no reductions or matrix primitives: the step may run tile by tile
# allowed values: argument -> ((lo, hi, lo_open, hi_open, why), ...); None: unbounded
RANGES = {ranges_text}
SCALAR_INPUTS = {tuple(scalar_inputs)!r}  # step_scalars' arguments (wd: the group's weight_decay)

{consts}
def _t(x):
    """Numbers as 0-dim float64 tensors: scalar math then follows IEEE rules (1/0 = inf)."""
    return x if isinstance(x, torch.Tensor) else torch.tensor(float(x), dtype=torch.float64)
{helpers}

def update({sig}):
    """One step of the rule for one parameter tensor; returns the new ({ret}).

    Scalars (lr, wd, step, hyperparameters) may be numbers or 0-dim tensors; they are
    used as 0-dim float64 tensors. Nothing is modified in place.
    """
{scalar_line}{chr(10).join(lines)}
    return {ret}


def _copy(scratch, k, src, like):
    """src copied into scratch[k] (reused tensors) or, without scratch, into new tensors."""
    out = scratch[k] if scratch is not None else [torch.empty_like(p) for p in like]
    torch._foreach_copy_(out, src)
    return out


def step_scalars({sc_sig}):
    """The numbers foreach_apply needs, computed once per step from the group's values."""
{sc_body}
    return ({sc_ret_float})  # Python floats: what torch._foreach_* takes as scalars


def foreach_apply({buf_names}, scratch, scalars):
    """update() on lists of tensors (one entry per parameter), in place: the parameters and
    state buffers are overwritten with their new values. ``scratch``: N_SCRATCH lists of
    tensors shaped like the parameters, for the temporaries (None: allocate them);
    ``scalars``: what step_scalars returned."""
{sc_unpack}{fe_body}


def foreach_update({fe_sig}):
    """foreach_apply with the step's scalars computed from these values."""
    foreach_apply({buf_names}, scratch, step_scalars({scalar_pass}))


def _run_tiled(lists, scratch, scalars, tile):
    """foreach_apply one tile of ``tile`` elements at a time (CPU, elementwise rules; see
    tile_views below): each foreach call is one pass over memory, and on large tensors every
    pass streams from DRAM; tile by tile the intermediate passes stay in cache. Same operations
    on the same elements: identical to one foreach_apply on the whole lists."""
    for views, sviews in tile_views(lists, scratch, tile):
        foreach_apply(*views, sviews, scalars)


{class_text}'''
