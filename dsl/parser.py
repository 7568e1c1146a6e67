"""``parse(source) -> Program``: Python syntax read with ``ast``, never executed.

This is a security boundary: text from an LLM comes through here. Only a
whitelist of node types is accepted; everything else is refused with a
``DSLError`` naming the line and column and saying what is allowed instead.
Nothing but ``DSLError`` escapes, whatever the input.
"""
from __future__ import annotations

import ast
import math

from .errors import DSLError
from .kinds import TENSOR, expr_kind, input_kinds
from .primitives import (
    BINARY_OPS,
    MAX_ARGS,
    MAX_DEPTH,
    MAX_NODES_PER_EXPR,
    MAX_SOURCE_CHARS,
    MAX_STATEMENTS,
    PRIMITIVES,
    RESERVED,
    SCALAR_INPUTS,
)
from .program import Arg, Assign, BinOp, Call, Expr, Name, Neg, Num, Program, count_nodes, depth

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_ALLOWED = ("Allowed: numbers, names, + - * / **, unary minus, and calls of "
            + ", ".join(PRIMITIVES) + ".")


def _err(node: ast.AST | None, msg: str) -> DSLError:
    line = getattr(node, "lineno", 0) or 0
    col = (getattr(node, "col_offset", -1) or 0) + 1 if node is not None and hasattr(node, "col_offset") else 0
    return DSLError(msg, line, col)


def _number(node: ast.AST) -> float:
    """A numeric literal, possibly negated; refuses bools, complex, non-finite."""
    neg = False
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        neg ^= isinstance(node.op, ast.USub)
        node = node.operand
    if not isinstance(node, ast.Constant) or isinstance(node.value, bool) \
            or not isinstance(node.value, (int, float)):
        raise _err(node, "expected a numeric literal (e.g. 0.9 or 1e-8)")
    try:
        v = float(node.value)
    except OverflowError:
        raise _err(node, "numeric literal is too large for a float") from None
    if not math.isfinite(v):
        raise _err(node, "numeric literal must be finite")
    return -v if neg else v


def _expr(node: ast.AST) -> Expr:
    if isinstance(node, ast.Constant):
        return Num(_number(node))
    if isinstance(node, ast.Name):
        if node.id in PRIMITIVES:
            raise _err(node, f"'{node.id}' is a function; call it as {node.id}(...)")
        return Name(node.id)
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.UAdd):
            return _expr(node.operand)
        if isinstance(node.op, ast.USub):
            inner = _expr(node.operand)
            if isinstance(inner, Num):
                return Num(-inner.value)
            return Neg(inner)
        raise _err(node, f"unary operator {type(node.op).__name__} is not allowed. {_ALLOWED}")
    if isinstance(node, ast.BinOp):
        op = _OPS.get(type(node.op))
        if op is None:
            raise _err(node, f"operator {type(node.op).__name__} is not allowed; use one of "
                             f"{' '.join(BINARY_OPS)}")
        return BinOp(op, _expr(node.left), _expr(node.right))
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise _err(node, "only direct calls of DSL functions are allowed (no attributes or "
                             f"computed callees). {_ALLOWED}")
        fn = node.func.id
        if fn not in PRIMITIVES:
            raise _err(node, f"unknown function '{fn}'. {_ALLOWED}")
        if node.keywords:
            raise _err(node, f"{fn}() takes positional arguments only")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise _err(node, "star-arguments are not allowed")
        prim = PRIMITIVES[fn]
        if len(node.args) != prim.arity:
            raise _err(node, f"{fn}() takes {prim.arity} argument(s), got {len(node.args)}: {prim.doc}")
        return Call(fn, tuple(_expr(a) for a in node.args))
    what = type(node).__name__
    hint = {"Attribute": "attributes (a.b) are not allowed", "Subscript": "subscripts (a[i]) are not allowed",
            "Lambda": "lambdas are not allowed", "IfExp": "conditional expressions are not allowed; "
            "use maximum/minimum/sign", "Compare": "comparisons are not allowed; use maximum/minimum/sign",
            "BoolOp": "and/or are not allowed"}.get(what, f"{what} expressions are not allowed")
    raise _err(node, f"{hint}. {_ALLOWED}")


def _signature(fn: ast.FunctionDef) -> tuple[Arg, ...]:
    a = fn.args
    if a.posonlyargs or a.vararg or a.kwonlyargs or a.kwarg:
        raise _err(fn, "only plain positional arguments are allowed (no /, *args, keyword-only or **kwargs)")
    if fn.decorator_list:
        raise _err(fn.decorator_list[0], "decorators are not allowed")
    if fn.returns is not None or any(x.annotation is not None for x in a.args):
        raise _err(fn, "type annotations are not allowed")
    if len(a.args) > MAX_ARGS:
        raise _err(fn, f"too many arguments ({len(a.args)} > {MAX_ARGS})")
    n_plain = len(a.args) - len(a.defaults)
    args, seen = [], set()
    for i, x in enumerate(a.args):
        if x.arg in seen:
            raise _err(x, f"argument '{x.arg}' appears twice")
        if x.arg in PRIMITIVES:
            raise _err(x, f"'{x.arg}' is a DSL function name and cannot be an argument")
        seen.add(x.arg)
        default = _number(a.defaults[i - n_plain]) if i >= n_plain else None
        if default is not None and x.arg in RESERVED:
            raise _err(x, f"'{x.arg}' is supplied by the optimizer and cannot have a default")
        args.append(Arg(x.arg, default))
    for req in ("w", "g"):
        if req not in seen:
            raise _err(fn, f"the signature must include '{req}' (w: the parameter, g: its gradient)")
    return tuple(args)


def parse(source: str) -> Program:
    """Parse and validate an update rule; raises only ``DSLError``."""
    try:
        return _parse(source)
    except DSLError:
        raise
    except (RecursionError, MemoryError):
        raise DSLError("program is nested too deeply; simplify the expressions") from None
    except Exception as e:  # any surprise in ast is still a refusal, never a crash
        raise DSLError(f"could not parse the program ({type(e).__name__}: {e})") from None


def _parse(source: str) -> Program:
    if not isinstance(source, str):
        raise DSLError(f"expected program text (str), got {type(source).__name__}")
    if len(source) > MAX_SOURCE_CHARS:
        raise DSLError(f"program text is too long ({len(source)} > {MAX_SOURCE_CHARS} characters)")
    try:
        tree = ast.parse(source.expandtabs(4) if "\t" in source else source)
    except SyntaxError as e:
        raise DSLError(f"syntax error: {e.msg}", e.lineno or 0, e.offset or 0) from None
    except ValueError as e:
        raise DSLError(f"syntax error: {e}") from None
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    others = [n for n in tree.body if not isinstance(n, ast.FunctionDef)
              and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
                       and isinstance(n.value.value, str))]
    if others:
        raise _err(others[0], "only one function definition is allowed at the top level "
                              "(no imports or other statements)")
    if not funcs:
        raise DSLError("expected exactly one 'def name(w, g, ...):' function, found none")
    if len(funcs) > 1:
        raise _err(funcs[1], f"expected exactly one 'def name(w, g, ...):' function, found {len(funcs)}: "
                             f"a second 'def {funcs[1].name}' starts here; keep one function")
    fn = funcs[0]
    args = _signature(fn)
    prog_args = Program(fn.name, args, (), ())
    state = prog_args.state_names
    read_only = set(SCALAR_INPUTS) | set(prog_args.hyperparams)
    stmts = list(fn.body)
    if stmts and isinstance(stmts[0], ast.Expr) and isinstance(stmts[0].value, ast.Constant) \
            and isinstance(stmts[0].value.value, str):
        stmts = stmts[1:]  # a docstring is allowed and dropped
    if not stmts or not isinstance(stmts[-1], ast.Return):
        raise _err(fn, f"the function must end with 'return {', '.join(('w',) + state)}'")
    if len(stmts) - 1 > MAX_STATEMENTS:
        raise _err(fn, f"too many statements ({len(stmts) - 1} > {MAX_STATEMENTS})")
    env = input_kinds(prog_args)
    body = []
    for st in stmts[:-1]:
        if isinstance(st, ast.Assign):
            if len(st.targets) != 1 or not isinstance(st.targets[0], ast.Name):
                raise _err(st, "assign to exactly one plain name per statement (no tuples, "
                               "subscripts or chained assignment)")
            target, value = st.targets[0].id, _expr(st.value)
        elif isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name) and type(st.op) in _OPS:
            target = st.target.id
            value = BinOp(_OPS[type(st.op)], Name(target), _expr(st.value))
        else:
            raise _err(st, f"{type(st).__name__} statements are not allowed; the body is assignments "
                           "'name = expression' and one final return (no loops, ifs, imports, calls "
                           "as statements)")
        if target in PRIMITIVES:
            raise _err(st, f"'{target}' is a DSL function name; choose another variable name")
        if target in read_only:
            raise _err(st, f"'{target}' is a read-only input; assign the result to a new name")
        if depth(value) > MAX_DEPTH or count_nodes(value) > MAX_NODES_PER_EXPR:
            raise _err(st, f"expression too large (depth <= {MAX_DEPTH}, nodes <= {MAX_NODES_PER_EXPR}); "
                           "split it into several assignments")
        env[target] = expr_kind(value, env, st.lineno)
        body.append(Assign(target, value, st.lineno))
    ret = stmts[-1]
    expected = ("w",) + state
    vals = ret.value
    items = vals.elts if isinstance(vals, ast.Tuple) else ([vals] if vals is not None else [])
    got = tuple(x.id if isinstance(x, ast.Name) else "?" for x in items)
    if got != expected:
        raise _err(ret, f"wrong return: expected 'return {', '.join(expected)}' "
                        f"(w, then every state tensor in signature order)")
    for nm in expected:
        if env.get(nm) != TENSOR:
            raise _err(ret, f"'{nm}' must be a tensor when returned, but it is a scalar expression")
    return Program(fn.name, args, tuple(body), expected)
