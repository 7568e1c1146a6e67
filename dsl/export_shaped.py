"""``export_shaped(program, class_name)``: the standalone module of a rule that uses shapes.

Such a rule runs one parameter at a time on its ``m x n`` view (``dsl.shaped``), so the module
has no foreach plan: ``update`` is the rule as written, one Python line per DSL statement, on the
views (``refresh`` becomes a conditional expression, so its new value is computed only on the
steps it is due; the matrix primitives stay the identity below 2-D), and the optimizer's
``_apply_param`` calls it for each parameter. The runtime functions are ``dsl.shaped``'s text;
the torch.optim side is ``dsl.optim_base``'s, as in every exported module, so a checkpoint of
``dsl.to_optimizer``'s class for the same rule loads into this one.
"""
from __future__ import annotations

import ast
import inspect

from . import shaped
from .compile import global_norm_inputs, range_table
from .export_parts import (
    BASE_IMPORTS,
    BASE_NAMES,
    EXPORT_RESERVED,
    HELPERS,
    indent,
    number_text,
    optimizer_class_text,
    pynames,
    python_safe,
    rename_expr,
)
from .fingerprint import fingerprint
from .primitives import PRIMITIVES, ROLE_INPUTS
from .program import BinOp, Call, Expr, Name, Neg, Num, Program, walk

__all__ = ["export_shaped", "SHAPED_NAMES"]


def _shaped_text() -> tuple[str, set[str]]:
    """dsl.shaped below its EXPORTED marker, without its imports (the module has them), and its names."""
    text = inspect.getsource(shaped)
    text = text[text.index("\n", text.index("# EXPORTED:")) + 1:]
    body = "\n".join(ln for ln in text.splitlines() if not ln.startswith(("import ", "from "))).strip("\n")
    names = {n.name for n in ast.parse(body).body if isinstance(n, ast.FunctionDef)}
    names |= {t.id for n in ast.parse(body).body if isinstance(n, ast.Assign) for t in n.targets
              if isinstance(t, ast.Name)}
    return body, names


SHAPED_BODY, SHAPED_NAMES = _shaped_text()
#: on the views, the reference interpreter's own formulas (the foreach helpers use lerp and norms
#: that round differently in bfloat16)
_VIEW_HELPERS = {
    "interp": '''def interp(x, y, a):
    """(1 - a) * x + a * y: a = 0 gives x, a = 1 gives y."""
    return (1 - a) * x + a * y
''',
    "norm": '''def norm(x):
    """L2 norm of the whole tensor (1 x 1)."""
    x = _t(x)
    return torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True) if x.dim() >= 2 else x.abs()
''',
    "rms": '''def rms(x):
    """Root mean square of the whole tensor (1 x 1)."""
    x = _t(x)
    return x.square().mean(dim=(-2, -1), keepdim=True).sqrt() if x.dim() >= 2 else x.abs()
''',
    "mean": '''def mean(x):
    """Mean of the whole tensor (1 x 1)."""
    x = _t(x)
    return x.mean(dim=(-2, -1), keepdim=True) if x.dim() >= 2 else x
''',
}
_MATRIX = {p.name for p in PRIMITIVES.values() if p.kind == "matrix"}


def _py(e: Expr) -> str:
    """Python text of a (renamed, python-safe) expression on the views; binary operations in parentheses."""
    if isinstance(e, Num):
        return number_text(e.value)
    if isinstance(e, Name):
        return e.id
    if isinstance(e, Neg):
        return f"(-{_py(e.operand)})"
    if isinstance(e, BinOp):
        return f"({_py(e.left)} {e.op} {_py(e.right)})"
    args = [_py(a) for a in e.args]
    if e.fn == "refresh":
        return f"({args[1]} if due(step, {args[0]}) else {args[2]})"
    if e.fn == "global_norm":
        return f"_global_norm_{e.args[0].id}"
    if e.fn in _MATRIX:
        return f"({e.fn}({args[0]}) if _pdim >= 2 else {args[0]})"
    return f"{e.fn}({', '.join(args)})"


def export_shaped(program: Program, class_name: str) -> str:
    """Source text of a standalone module for a rule using shapes (see the module docstring)."""
    if class_name in SHAPED_NAMES:
        raise ValueError(f"class_name {class_name!r} is a name the module defines itself; choose another")
    rename = pynames(program)
    all_names = set(program.arg_names) | {s.target for s in program.body}
    for n in sorted(all_names):  # the runtime's own names are taken too
        if n in SHAPED_NAMES and n not in rename:
            new = n + "_"
            while new in all_names or new in rename.values():
                new += "_"
            rename[n] = new
    r = lambda n: rename.get(n, n)  # noqa: E731
    source = program.source()
    kinds, inits = program.state_kinds, program.state_inits
    states = program.state_names
    roles = [n for n in program.arg_names if n in ROLE_INPUTS]
    scalar_args = [a.name for a in program.args if a.name not in ("w", "g") and a.name not in states
                   and a.name not in ROLE_INPUTS]
    norms = global_norm_inputs(program)
    folded: set[str] = set()
    body = [(r(s.target), _py(python_safe(rename_expr(s.value, rename), folded))) for s in program.body]
    used = {n.fn for s in program.body for n in walk(s.value) if isinstance(n, Call)}
    helpers = "\n\n".join(_VIEW_HELPERS.get(f, HELPERS.get(f, "")) for f in sorted(used) if f in HELPERS)
    consts = "".join(f"{c} = math.{c}\n" for c in ("inf", "nan") if any(c in f for f in folded))

    sig = [r("w"), r("g"), *[r(s) for s in states]]
    sig += [r(n) if n not in program.hyperparams else f"{r(n)}={program.hyperparams[n]!r}" for n in scalar_args]
    # refresh needs the step even where the rule's signature does not name it
    step_kw = "refresh" in used and "step" not in scalar_args
    sig += ["*", "role=None"] + [f"global_norm_{n}=None" for n in norms] + (["step=1"] if step_kw else [])
    lines = []
    if scalar_args or step_kw:
        names = [r(n) for n in scalar_args] + (["step"] if step_kw else [])
        lines.append(f"{', '.join(names)}, = {', '.join(f'_t({n})' for n in names)},")
    lines.append(f"_pdim = {r('w')}.dim()")
    if roles:
        lines.append(f"{', '.join(r(n) for n in ROLE_INPUTS)} = (_t(f) for f in role_flags(role, _pdim))")
    lines.append(f"_stored = ({', '.join([r('w')] + [r(s) for s in states])},)")
    lines.append(f"{r('w')}, {r('g')} = to_view({r('w')}), to_view({r('g')})")
    for s in states:
        lines.append(f"{r(s)} = state_to_view({r(s)}, {kinds[s]!r})")
    for n in norms:
        lines.append(f"_global_norm_{n} = (torch.linalg.vector_norm({r(n)}) if global_norm_{n} is None "
                     f"else _t(global_norm_{n}))")
    lines.append("# the rule, on the m x n views")
    lines += [f"{t} = {v}" for t, v in body]
    outs = [f"view_to_stored({r('w')}, 'tensor', _stored[0])"]
    outs += [f"view_to_stored({r(s)}, {kinds[s]!r}, _stored[{i + 1}])" for i, s in enumerate(states)]
    ret = ", ".join(outs) + ("," if len(outs) == 1 else "")
    spec = {s: (kinds[s], inits[s]) for s in states}
    hyper = program.hyperparams
    ranges_text = "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in range_table(program).items()) + "}"
    rule_block = indent(source.rstrip("\n"), 4)
    norm_pass = "".join(f", global_norm_{n}=norms.get({n!r})" for n in norms) + (', step=env["step"]' if step_kw
                                                                                 else "")
    methods = f"""
    def _init_state(self, p, name):
        kind, init = STATE_SPEC[name]
        w = torch.view_as_real(p) if torch.is_complex(p) else p
        st = new_state(kind, init, w.detach())
        return torch.view_as_complex(st) if torch.is_complex(p) and kind == "tensor" else st

    def _apply_param(self, w, g, bufs, env, role, norms):
        out = update(w, g, *bufs, *[env[n] for n in SCALAR_INPUTS], role=role{norm_pass})
        for buf, new in zip([w, *bufs], out):
            buf.copy_(new)
"""
    class_text = optimizer_class_text(class_name, source, hyper, ["PER_PARAM = True", "GLOBAL_NORMS = GLOBAL_NORMS"],
                                      methods)
    return f'''"""{class_name}: a torch.optim optimizer exported by optforge from this update rule:

{rule_block}

Read it as Python on the m x n view of each parameter (m = shape[0], n = the rest; a vector is
n x 1): w is the parameter, g its gradient, lr and wd the group's learning rate and weight
decay, step counts updates from 1; states have the declared shapes (row: m x 1, col: 1 x n,
scalar, rowmat: m x m, colmat: n x n, tensor: the parameter's) and initial values (else 0);
interp(x, y, a) = (1 - a) * x + a * y; refresh(k, new, old) is new on steps 1, k + 1, ...

This file depends only on torch. ``{class_name}(params, lr=..., weight_decay=..., ...)`` works like
any torch.optim optimizer (param groups, closures, LR schedulers, state_dict); a param group may
set ``role`` (matrix, embedding, head, vector; default: 2-D and larger are matrices). ``update``
below is the rule for one parameter; ``step`` calls it for each parameter of each group.
"""
{BASE_IMPORTS}

RULE = {source!r}
FINGERPRINT = {fingerprint(program)!r}  # optforge's functional hash of the rule
HYPERPARAMETERS = {dict(hyper)!r}
STATE = {tuple(states)!r}
STATE_SPEC = {spec!r}  # state -> (shape kind, initial value)
GLOBAL_NORMS = {norms!r}  # inputs whose norm over the whole param group the rule reads
SCALAR_INPUTS = {tuple(scalar_args)!r}  # update's scalar arguments, in order
# allowed values: argument -> ((lo, hi, lo_open, hi_open, why), ...); None: unbounded
RANGES = {ranges_text}

{consts}
def _t(x):
    """Numbers as 0-dim float64 tensors: scalar math then follows IEEE rules (1/0 = inf)."""
    return x if isinstance(x, torch.Tensor) else torch.tensor(float(x), dtype=torch.float64)


{helpers}


# ---- the runtime of rules using shapes: optforge's dsl/shaped.py, verbatim ----

{SHAPED_BODY}


def update({", ".join(sig)}):
    """One step of the rule for one parameter; returns the new (w, states...) in their stored shapes.

    ``role``: the parameter's role (None: by dimension); ``global_norm_*``: the norm over the whole
    param group (None: this parameter's own)."""
{indent(chr(10).join(lines), 4)}
    return {ret}


{class_text}'''


def check_shaped_names(class_name: str) -> None:
    if class_name in SHAPED_NAMES or class_name in BASE_NAMES or class_name in EXPORT_RESERVED:
        raise ValueError(f"class_name {class_name!r} is a name the module defines itself; choose another")
