"""``parse(source) -> Program``: Python syntax read with ``ast``, never executed.

This is a security boundary: text from an LLM comes through here. Only a
whitelist of node types is accepted; everything else is refused with a
``DSLError`` naming the line and column and saying what is allowed instead.
Nothing but ``DSLError`` escapes, whatever the input.
"""
from __future__ import annotations

import ast
import difflib
import math

from .errors import DSLError
from .kinds import SCALAR, TENSOR, KindError, expr_kind, input_kinds, show
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
    STATE_INITS,
    STATE_KINDS,
    TENSOR_INPUTS,
)
from .program import Arg, Assign, BinOp, Call, Expr, Name, Neg, Num, Program, count_nodes, depth, walk

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_ALLOWED = ("Allowed: numbers, names, + - * / **, unary minus, and calls of "
            + ", ".join(PRIMITIVES) + ".")


def _err(node: ast.AST | None, msg: str) -> DSLError:
    line = getattr(node, "lineno", 0) or 0
    col = (getattr(node, "col_offset", -1) or 0) + 1 if node is not None and hasattr(node, "col_offset") else 0
    return DSLError(msg, line, col)


def did_you_mean(name: str, candidates) -> str:
    """`` (did you mean 'beta2'?)`` for the closest candidate (difflib), or ``""``."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


#: where each Expr node built by the parser came from: id(node) -> (line, col), for kind errors
_Where = dict[int, tuple[int, int]]


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


def _expr(node: ast.AST, where: _Where | None = None) -> Expr:
    e = _expr_node(node, where)
    if where is not None and hasattr(node, "lineno"):
        where.setdefault(id(e), (node.lineno, node.col_offset + 1))
    return e


def _expr_node(node: ast.AST, where: _Where | None) -> Expr:
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
            inner = _expr(node.operand, where)
            if isinstance(inner, Num):
                return Num(-inner.value)
            return Neg(inner)
        raise _err(node, f"unary operator {type(node.op).__name__} is not allowed. {_ALLOWED}")
    if isinstance(node, ast.BinOp):
        op = _OPS.get(type(node.op))
        if op is None:
            raise _err(node, f"operator {type(node.op).__name__} is not allowed; use one of "
                             f"{' '.join(BINARY_OPS)}")
        return BinOp(op, _expr(node.left, where), _expr(node.right, where))
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise _err(node, "only direct calls of DSL functions are allowed (no attributes or "
                             f"computed callees). {_ALLOWED}")
        fn = node.func.id
        if fn not in PRIMITIVES:
            raise _err(node, f"unknown function '{fn}'{did_you_mean(fn, PRIMITIVES)}. {_ALLOWED}")
        if node.keywords:
            raise _err(node, f"{fn}() takes positional arguments only")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise _err(node, "star-arguments are not allowed")
        prim = PRIMITIVES[fn]
        if len(node.args) != prim.arity:
            raise _err(node, f"{fn}() takes {prim.arity} argument(s), got {len(node.args)}: {prim.doc}")
        return Call(fn, tuple(_expr(a, where) for a in node.args))
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
    if fn.returns is not None:
        raise _err(fn.returns, "a return annotation is not allowed")
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
        dnode = a.defaults[i - n_plain] if i >= n_plain else None
        if x.annotation is not None:
            args.append(_state_arg(x, dnode))
            continue
        default = _number(dnode) if dnode is not None else None
        if default is not None and x.arg in RESERVED:
            raise _err(x, f"'{x.arg}' is supplied by the optimizer and cannot have a default")
        args.append(Arg(x.arg, default))
    for req in ("w", "g"):
        if req not in seen:
            raise _err(fn, f"the signature must include '{req}' (w: the parameter, g: its gradient)")
    return tuple(args)


def _state_arg(x: ast.arg, dnode: ast.AST | None) -> Arg:
    """``name: kind`` or ``name: kind = init``: a state of a declared shape and initial value."""
    ann = x.annotation
    kinds = ", ".join(STATE_KINDS)
    if not isinstance(ann, ast.Name) or ann.id not in STATE_KINDS:
        got = ann.id if isinstance(ann, ast.Name) else type(ann).__name__
        hint = did_you_mean(got, STATE_KINDS) if isinstance(ann, ast.Name) else ""
        raise _err(ann, f"'{got}' is not a state shape{hint}; annotate a state with one of {kinds} "
                        "(e.g. 'r: row', 'L: rowmat = eye')")
    if x.arg in RESERVED:
        raise _err(x, f"'{x.arg}' is supplied by the optimizer; only state arguments take a shape annotation")
    kind = ann.id
    init: float | str | None = None
    if dnode is not None:
        if isinstance(dnode, ast.Name):
            if dnode.id not in STATE_INITS:
                raise _err(dnode, f"unknown initial value '{dnode.id}'{did_you_mean(dnode.id, STATE_INITS)}; "
                                  "a state starts at a number, eye (rowmat/colmat) or w (tensor)")
            if dnode.id == "eye" and kind not in ("rowmat", "colmat"):
                raise _err(dnode, f"eye is the initial value of a square state (rowmat or colmat), not of a {kind}")
            if dnode.id == "w" and kind != "tensor":
                raise _err(dnode, f"w is the initial value of a tensor state (the parameter's shape), not of a {kind}")
            init = dnode.id
        else:
            init = _number(dnode)
            if init == 0:
                init = None
    return Arg(x.arg, None, None if kind == "tensor" else kind, init)


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
        hint = ("; states with an initial value and hyperparameters go after the arguments without one"
                if "default" in (e.msg or "") else "")
        raise DSLError(f"syntax error: {e.msg}{hint}", e.lineno or 0, e.offset or 0) from None
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
    assigned_later = {t.id for st in stmts[:-1] for t in ast.walk(st) if isinstance(t, ast.Name)
                      and isinstance(t.ctx, ast.Store)}
    where: _Where = {}
    reassigned: set[str] = set()
    for st in stmts[:-1]:
        if isinstance(st, ast.Assign):
            if len(st.targets) != 1 or not isinstance(st.targets[0], ast.Name):
                raise _err(st, "assign to exactly one plain name per statement (no tuples, "
                               "subscripts or chained assignment)")
            target, value = st.targets[0].id, _expr(st.value, where)
        elif isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name) and type(st.op) in _OPS:
            target = st.target.id
            self_ref = Name(target)
            where[id(self_ref)] = (st.target.lineno, st.target.col_offset + 1)
            value = BinOp(_OPS[type(st.op)], self_ref, _expr(st.value, where))
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
        env[target] = _kind_at(value, env, st, where, assigned_later, reassigned)
        if target in TENSOR_INPUTS:
            reassigned.add(target)
        body.append(Assign(target, value, st.lineno))
    ret = stmts[-1]
    expected = ("w",) + state
    vals = ret.value
    items = vals.elts if isinstance(vals, ast.Tuple) else ([vals] if vals is not None else [])
    got = tuple(x.id if isinstance(x, ast.Name) else "?" for x in items)
    if got != expected:
        raise _err(ret, f"wrong return: expected 'return {', '.join(expected)}' "
                        f"(w, then every state tensor in signature order)")
    declared = {"w": TENSOR, **prog_args.state_kinds}
    for nm in expected:
        want, got = declared[nm], env.get(nm)
        if got != want:
            if want == TENSOR and got == SCALAR:
                raise _err(ret, f"'{nm}' must be a tensor when returned, but it is a scalar expression")
            raise _err(ret, f"'{nm}' must be a {show(want)} value when returned (its declared shape), but it "
                            f"is a {show(got)} value")
    return Program(fn.name, args, tuple(body), expected)


def _kind_at(value: Expr, env: dict[str, str], st: ast.stmt, where: _Where, assigned: set[str],
             reassigned: set[str]) -> str:
    """The statement's kind; a kind error or an unknown name gets the line and column of the node
    it is about, and a misspelled name a suggestion."""
    for node in walk(value):
        if isinstance(node, Call) and PRIMITIVES[node.fn].kind == "group" and node.args \
                and isinstance(node.args[0], Name) and node.args[0].id in reassigned:
            line, col = where.get(id(node), (st.lineno, 0))
            raise DSLError(f"{node.fn}({node.args[0].id}) reads the input {node.args[0].id} of every parameter; "
                           f"'{node.args[0].id}' is reassigned before this line, so compute {node.fn}() first "
                           "(e.g. n = global_norm(g) at the top)", line, col)
    try:
        return expr_kind(value, env, st.lineno)
    except KindError as e:
        line, col = where.get(id(e.node), (st.lineno, 0))
        msg = e.message
        if isinstance(e.node, Name) and e.node.id not in env:
            nm = e.node.id
            if nm in RESERVED:
                msg = f"'{nm}' is an input the optimizer supplies: add it to the signature to read it"
            elif nm not in assigned:
                known = [n for n in env if n not in PRIMITIVES]
                msg = (f"name '{nm}' is used before it is assigned: it is neither an argument nor assigned "
                       f"above{did_you_mean(nm, known)}")
        raise DSLError(msg, line, col) from None
