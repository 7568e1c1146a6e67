"""The pieces every exported module is made of: the primitives as small documented functions,
``dsl.optim_base``'s text, Python-safe number printing and the renaming of rule names that would
shadow the module's own (shared by ``dsl.export`` and ``dsl.export_shaped``)."""
from __future__ import annotations

import ast
import inspect
import math
import re

import numpy as np

from . import optim_base
from .optim_base import FLAG_DEFAULTS
from .primitives import NORM_EPS, NS_COEFFS, NS_STEPS, ROW_EPS
from .program import BinOp, Expr, Name, Neg, Num, Program, children, substitute, with_children


def wrapper_text(name: str, args: tuple[str, ...], doc: str = "") -> str:
    """A helper that is torch's function of the same name on ``_t`` of each argument."""
    docline = f'    """{doc}"""\n' if doc else ""
    return f"def {name}({', '.join(args)}):\n{docline}    return torch.{name}({', '.join(f'_t({a})' for a in args)})\n"


HELPERS: dict[str, str] = {
    "sign": wrapper_text("sign", ("x",), "-1, 0 or 1, elementwise."),
    "abs": wrapper_text("abs", ("x",), "|x|, elementwise."),
    "sqrt": wrapper_text("sqrt", ("x",), "Square root, elementwise (nan below 0)."),
    "square": '''def square(x):
    """x * x, elementwise."""
    x = _t(x)
    return x * x
''',
    "exp": wrapper_text("exp", ("x",)),
    "log": wrapper_text("log", ("x",), "Natural log, elementwise."),
    "tanh": wrapper_text("tanh", ("x",)),
    "clip": '''def clip(x, c):
    """x clamped to [-c, c]."""
    x, c = _t(x), _t(c)
    return torch.minimum(torch.maximum(x, -c), c)
''',
    "maximum": wrapper_text("maximum", ("x", "y")),
    "minimum": wrapper_text("minimum", ("x", "y")),
    "interp": '''def interp(x, y, a):
    """(1 - a) * x + a * y: a = 0 gives x, a = 1 gives y (the Lion paper's convention).

    On two tensors of the same shape this is torch.lerp(x, y, a) = x + a * (y - x).
    """
    x, y = _t(x), _t(y)
    if x.dim() > 0 and x.shape == y.shape and x.dtype == y.dtype and x.device == y.device:
        if not isinstance(a, torch.Tensor):
            return torch.lerp(x, y, float(a))
        if a.dim() == 0 and a.device.type == "cpu" and a.dtype == torch.float64:
            return torch.lerp(x, y, float(a))  # a scalar of the rule (a CPU number)
        return torch.lerp(x, y, a.to(x.dtype))
    return (1 - a) * x + a * y
''',
    "norm": '''def norm(x):
    """L2 norm of the whole tensor (a 0-dim tensor)."""
    return torch.linalg.vector_norm(_t(x))
''',
    "rms": '''def rms(x):
    """Root mean square of the whole tensor: norm(x) / sqrt(numel)."""
    x = _t(x)
    return torch.linalg.vector_norm(x) * x.numel() ** -0.5
''',
    "mean": '''def mean(x):
    """Mean of the whole tensor (a 0-dim tensor)."""
    return _t(x).mean()
''',
    "orthogonalize": f'''def orthogonalize(x):
    """Newton-Schulz orthogonalization as in Muon, on x viewed as shape[0] x rest.

    {NS_STEPS} quintic iterations X <- a X + (b A + c A^2) X with A = X X^T, starting from
    x / (||x||_F + {NORM_EPS!r}); the identity on tensors with fewer than 2 dimensions.
    """
    if x.dim() < 2:
        return x.clone()  # storage of its own: step() may write into the result
    a, b, c = {NS_COEFFS[0]!r}, {NS_COEFFS[1]!r}, {NS_COEFFS[2]!r}
    X = x.reshape(x.shape[0], -1)
    X = X / (torch.linalg.matrix_norm(X) + {NORM_EPS!r})
    transposed = X.shape[0] > X.shape[1]
    if transposed:
        X = X.mT
    for _ in range({NS_STEPS}):
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    if transposed:
        X = X.mT
    return X.reshape(x.shape)
''',
    "row_normalize": f'''def row_normalize(x):
    """Each row of the shape[0] x rest view scaled to unit L2 norm (identity below 2-D)."""
    if x.dim() < 2:
        return x.clone()  # storage of its own: step() may write into the result
    m = x.reshape(x.shape[0], -1)
    return (m / torch.linalg.vector_norm(m, dim=-1, keepdim=True).clamp_min({ROW_EPS!r})).reshape(x.shape)
''',
    "col_normalize": f'''def col_normalize(x):
    """Each column of the shape[0] x rest view scaled to unit L2 norm (identity below 2-D)."""
    if x.dim() < 2:
        return x.clone()  # storage of its own: step() may write into the result
    m = x.reshape(x.shape[0], -1)
    return (m / torch.linalg.vector_norm(m, dim=-2, keepdim=True).clamp_min({ROW_EPS!r})).reshape(x.shape)
''',
}

NP_BIN = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power}
PY_BIN = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
           "/": lambda a, b: a / b, "**": lambda a, b: a ** b}


def base_text() -> tuple[str, str, set[str]]:
    """dsl.optim_base below its EXPORTED marker: (its imports, the rest, the names it defines)."""
    text = inspect.getsource(optim_base)
    text = text[text.index("\n", text.index("# EXPORTED:")) + 1:]
    lines = text.splitlines()
    k = 0
    while k < len(lines) and (not lines[k].strip() or lines[k].startswith(("import ", "from "))):
        k += 1
    names = set()
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {tg.id for tg in node.targets if isinstance(tg, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return "\n".join(lines[:k]).strip("\n"), "\n".join(lines[k:]).strip("\n"), names


BASE_IMPORTS, BASE_BODY, BASE_NAMES = base_text()


def literal(e: Expr) -> bool:
    """Numbers combined by operators only: Python would evaluate these itself."""
    if isinstance(e, Num):
        return True
    if isinstance(e, Neg):
        return literal(e.operand)
    if isinstance(e, BinOp):
        return literal(e.left) and literal(e.right)
    return False


def eval_literal(e: Expr, py: bool):
    if isinstance(e, Num):
        return float(e.value) if py else np.float64(e.value)
    if isinstance(e, Neg):
        return -eval_literal(e.operand, py)
    a, b = eval_literal(e.left, py), eval_literal(e.right, py)
    return PY_BIN[e.op](a, b) if py else NP_BIN[e.op](a, b)


def number_text(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "(-inf)"
    s = repr(float(v))
    return f"({s})" if s.startswith("-") else s


def floats(e: Expr) -> Expr:
    """Numbers printed as floats (``2.0``), so Python never does exact big-integer math."""
    if isinstance(e, Num):
        return Name(number_text(e.value))
    return with_children(e, tuple(floats(c) for c in children(e)))


def python_safe(e: Expr, folded: set[str]) -> Expr:
    """Pure-number subexpressions that Python would raise on (1/0, 10.0**400, (-8)**0.5 ->
    complex) are folded to the DSL's float64 value (its text added to ``folded``); other
    pure-number ones print as floats."""
    if isinstance(e, BinOp) and literal(e):
        with np.errstate(all="ignore"):
            want = float(eval_literal(e, py=False))
        try:
            got = eval_literal(e, py=True)
            ok = isinstance(got, float) and (got == want or (math.isnan(got) and math.isnan(want)))
        except (ArithmeticError, ValueError):
            ok = False
        if ok:
            return floats(e)
        folded.add(number_text(want))
        return Name(number_text(want))
    return with_children(e, tuple(python_safe(c, folded) for c in children(e)))


def rename_expr(e: Expr, names: dict[str, str]) -> Expr:
    return substitute(e, {old: Name(new) for old, new in names.items()})


def indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line if line else line for line in text.splitlines())


EXPORT_RESERVED = {"torch", "math", "scratch", "scalars", "inf", "nan", "float", "list", "t", "update",
                   "foreach_update", "foreach_apply", "step_scalars"}


def pynames(program: Program) -> dict[str, str]:
    """Python names for the rule's names: unchanged unless they would shadow a name the
    generated code uses (then with a trailing underscore)."""
    all_names = set(program.arg_names) | {s.target for s in program.body}
    out: dict[str, str] = {}
    for n in sorted(all_names):
        if n in EXPORT_RESERVED or n.startswith("_") or re.fullmatch(r"[stv]\d+", n):
            new = n + "_"
            while new in all_names or new in out.values():
                new += "_"
            out[n] = new
    return out


def optimizer_class_text(class_name: str, source: str, hyper: dict[str, float], attrs: list[str],
                         methods: str, call_extra: str = "") -> str:
    """The torch.optim side of every exported module: ``dsl/optim_base.py`` verbatim, then the rule's
    class (docstring = the rule's source) with ``dsl.to_optimizer``'s constructor: ``lr``,
    ``weight_decay``, the rule's hyperparameters, ``betas=(b1, b2)`` where the rule has ``beta1`` and
    ``beta2``, and torch's flags. ``attrs`` are extra class attributes (``"NAME = value"``),
    ``methods`` the class's own methods (indented), ``call_extra`` more ``update`` keywords."""
    betas = "beta1" in hyper and "beta2" in hyper
    init_sig = ", ".join(["self", "params", "lr=1e-3", "weight_decay=0.0"]
                         + [f"{h}={v!r}" for h, v in hyper.items()]
                         + ["*"] + (["betas=None"] if betas else [])
                         + [f"{f}={v!r}" for f, v in FLAG_DEFAULTS.items()])
    passes = "".join(f", {h}={h}" for h in hyper)
    unpack = ("        if betas is not None:   # torch.optim's spelling of (beta1, beta2)\n"
              "            beta1, beta2 = betas\n") if betas else ""
    attr_lines = "".join(f"    {a}\n" for a in ["RULE = RULE", "FINGERPRINT = FINGERPRINT",
                                                 "HYPERPARAMETERS = HYPERPARAMETERS", "STATE = STATE",
                                                 "RANGES = RANGES", *attrs])
    return f'''# ---- the torch.optim side: optforge's dsl/optim_base.py, verbatim (shared with dsl.to_optimizer) ----

{BASE_BODY}

class {class_name}(RuleOptimizer):
    """{class_name}, the update rule:

{indent(source.rstrip(chr(10)), 4)}
    """

{attr_lines}
    def __init__({init_sig}):
{unpack}        super().__init__(params, lr, weight_decay, maximize=maximize, foreach=foreach, capturable=capturable,
                         differentiable=differentiable, fused=fused{passes}{call_extra})
{methods}'''
