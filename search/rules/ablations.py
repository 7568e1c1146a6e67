"""The rule kind's empirical simplification tries (``KindPlugin.ablations``), cheapest-looking first.

The loop that evaluates them and keeps those that cost (almost) nothing is generic
(search.core.simplify); this module lists the changed programs for a DSL rule:

1. remove one statement (later reads then see the previous value of the name);
2. bypass one function call (``clip(x, c)`` -> ``x``, ``sign(u)`` -> ``u``);
3. drop one term of a sum or difference (``u + 6e-05 * w`` -> ``u``, ``x - 0.001`` -> ``x``) and
   one constant factor (``x * 0.98`` -> ``x``, ``g / 0.0122`` -> ``g``): search leaves such
   small corrections behind, and they rarely matter;
4. round one constant (a literal or a hyperparameter default) to fewer significant digits,
   fewest first.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import dsl
from dsl.program import Arg, BinOp, Call, Num, format_expr, replace_node, statement_nodes


def _round_sig(v: float, d: int) -> float:
    if v == 0 or not math.isfinite(v):
        return v
    return float(f"{v:.{d}g}")


def rule_ablations(text: str, digits: Sequence[int]) -> list[tuple[str, str]]:
    """(description, program text) of every simplification to try, cheapest-looking first."""
    prog = dsl.parse(text)
    out: list[tuple[str, str]] = []
    seen = {prog.source()}

    def add(desc: str, p) -> None:
        try:
            src = dsl.parse(p.source()).source()
        except dsl.DSLError:
            return
        if src not in seen:
            seen.add(src)
            out.append((desc, src))

    for i in range(len(prog.body) - 1, -1, -1):
        st = prog.body[i]
        add(f"remove '{st.target} = {format_expr(st.value)}'", prog.replace(body=prog.body[:i] + prog.body[i + 1:]))
    for i, path, nd in statement_nodes(prog):
        if isinstance(nd, Call) and nd.args:
            add(f"bypass {nd.fn}() in '{prog.body[i].target} = ...'", replace_node(prog, i, path, nd.args[0]))
    for i, path, nd in statement_nodes(prog):
        if isinstance(nd, BinOp) and nd.op in ("+", "-"):
            add(f"drop term '{format_expr(nd.right)}' in '{prog.body[i].target} = ...'",
                replace_node(prog, i, path, nd.left))
            if nd.op == "+":
                add(f"drop term '{format_expr(nd.left)}' in '{prog.body[i].target} = ...'",
                    replace_node(prog, i, path, nd.right))
        elif isinstance(nd, BinOp) and nd.op in ("*", "/") and isinstance(nd.right, Num):
            add(f"drop factor '{nd.op} {format_expr(nd.right)}' in '{prog.body[i].target} = ...'",
                replace_node(prog, i, path, nd.left))
        elif isinstance(nd, BinOp) and nd.op == "*" and isinstance(nd.left, Num):
            add(f"drop factor '{format_expr(nd.left)} *' in '{prog.body[i].target} = ...'",
                replace_node(prog, i, path, nd.right))
    for d in sorted(digits):
        for i, path, nd in statement_nodes(prog):
            if isinstance(nd, Num):
                v = _round_sig(nd.value, d)
                if v != nd.value:
                    add(f"round {nd.value!r} -> {v!r}", replace_node(prog, i, path, Num(v)))
        for k, a in enumerate(prog.args):
            if a.default is not None:
                v = _round_sig(a.default, d)
                if v != a.default:
                    args = list(prog.args)
                    args[k] = Arg(a.name, v)
                    add(f"round {a.name}={a.default!r} -> {v!r}", prog.replace(args=tuple(args)))
    return out
