"""The program AST: small, immutable, hashable; ``Program.source()`` prints canonical text.

Canonical text parses back to an equal ``Program`` (line numbers are not part of
equality). Negative literals are folded into ``Num`` by the parser, so the printer
parenthesizes a negative ``Num`` exactly like a unary minus.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace

from .primitives import RESERVED, SCALAR_INPUTS


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / **
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Neg:
    operand: "Expr"


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple["Expr", ...]


Expr = Num | Name | BinOp | Neg | Call


@dataclass(frozen=True)
class Assign:
    target: str
    value: Expr
    line: int = field(default=0, compare=False, hash=False)


@dataclass(frozen=True)
class Arg:
    """A signature entry. ``default`` (a number) makes it a hyperparameter. A state may declare a
    shape ``kind`` (``dsl.primitives.STATE_KINDS``; None: a parameter-shaped tensor) and an
    initial value ``init`` (a number, ``"eye"`` or ``"w"``; None: zero). A plain zero tensor
    state is ``Arg(name)``, whatever annotation it was written with, so equal rules compare equal."""
    name: str
    default: float | None = None  # a number => hyperparameter
    kind: str | None = None
    init: float | str | None = None

    def text(self) -> str:
        """The canonical signature entry: ``m``, ``beta=0.9``, ``r: row``, ``L: rowmat = eye``."""
        if self.default is not None:
            return f"{self.name}={format_number(self.default)}"
        if self.kind is None and self.init is None:
            return self.name
        out = f"{self.name}: {self.kind or 'tensor'}"
        if self.init is not None:
            out += " = " + (self.init if isinstance(self.init, str) else format_number(self.init))
        return out


@dataclass(frozen=True)
class Program:
    name: str
    args: tuple[Arg, ...]
    body: tuple[Assign, ...]
    returns: tuple[str, ...]

    # -- signature views -------------------------------------------------
    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.args)

    @property
    def state_names(self) -> tuple[str, ...]:
        """State tensors, in signature order (zero-initialized, shaped like w)."""
        return tuple(a.name for a in self.args if a.default is None and a.name not in RESERVED)

    @property
    def state_kinds(self) -> dict[str, str]:
        """Each state's shape kind (``tensor`` unless declared), in signature order."""
        names = set(self.state_names)
        return {a.name: a.kind or "tensor" for a in self.args if a.name in names}

    @property
    def state_inits(self) -> dict[str, float | str]:
        """Each state's initial value: 0.0 unless declared (a number, ``"eye"`` or ``"w"``)."""
        names = set(self.state_names)
        return {a.name: 0.0 if a.init is None else a.init for a in self.args if a.name in names}

    @property
    def hyperparams(self) -> dict[str, float]:
        return {a.name: a.default for a in self.args if a.default is not None}

    @property
    def scalar_inputs(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.args if a.name in SCALAR_INPUTS or a.default is not None)

    def size(self) -> int:
        """Number of expression nodes in the body (the 'program size' objective)."""
        return sum(count_nodes(s.value) for s in self.body)

    def replace(self, **changes) -> "Program":
        return dataclass_replace(self, **changes)

    # -- printing -------------------------------------------------------
    def source(self) -> str:
        sig = [a.text() for a in self.args]
        lines = [f"def {self.name}({', '.join(sig)}):"]
        for s in self.body:
            lines.append(f"    {s.target} = {format_expr(s.value)}")
        lines.append(f"    return {', '.join(self.returns)}")
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.source()


# -- expression utilities -----------------------------------------------------

def walk(e: Expr) -> Iterator[Expr]:
    """Pre-order traversal of an expression."""
    yield e
    for c in children(e):
        yield from walk(c)


def names_in(e: Expr) -> set[str]:
    return {n.id for n in walk(e) if isinstance(n, Name)}


def count_nodes(e: Expr) -> int:
    return sum(1 for _ in walk(e))


def depth(e: Expr) -> int:
    return 1 + max((depth(c) for c in children(e)), default=0)


def substitute(e: Expr, mapping: dict[str, Expr]) -> Expr:
    """Replace names by expressions (used by inlining and renaming)."""
    if isinstance(e, Name):
        return mapping.get(e.id, e)
    return with_children(e, tuple(substitute(c, mapping) for c in children(e)))


# -- tree paths (mutation operators and empirical simplification edit rules by path) -----

#: Child indices from an expression's root to one of its nodes.
NodePath = tuple[int, ...]


def children(e: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of ``e`` (operands, call arguments), in order."""
    if isinstance(e, BinOp):
        return (e.left, e.right)
    if isinstance(e, Neg):
        return (e.operand,)
    if isinstance(e, Call):
        return e.args
    return ()


def with_children(e: Expr, kids: tuple[Expr, ...]) -> Expr:
    """``e`` with its direct sub-expressions replaced by ``kids`` (leaves are returned unchanged)."""
    if isinstance(e, BinOp):
        return BinOp(e.op, kids[0], kids[1])
    if isinstance(e, Neg):
        return Neg(kids[0])
    if isinstance(e, Call):
        return Call(e.fn, tuple(kids))
    return e


def nodes(e: Expr, path: NodePath = ()) -> Iterator[tuple[NodePath, Expr]]:
    """(path, node) pairs in pre-order; a path is the child indices from the root."""
    yield path, e
    for k, c in enumerate(children(e)):
        yield from nodes(c, path + (k,))


def replace_at(e: Expr, path: NodePath, new: Expr) -> Expr:
    """``e`` with the node at ``path`` replaced by ``new``."""
    if not path:
        return new
    kids = list(children(e))
    kids[path[0]] = replace_at(kids[path[0]], path[1:], new)
    return with_children(e, tuple(kids))


def statement_nodes(program: "Program") -> list[tuple[int, NodePath, Expr]]:
    """(statement index, path, node) for every node of every right-hand side, in program order."""
    return [(i, p, nd) for i, s in enumerate(program.body) for p, nd in nodes(s.value)]


def replace_node(program: "Program", i: int, path: NodePath, new: Expr) -> "Program":
    """``program`` with the node at ``path`` in statement ``i``'s right-hand side replaced by ``new``."""
    body = list(program.body)
    body[i] = Assign(body[i].target, replace_at(body[i].value, path, new))
    return program.replace(body=tuple(body))


# -- canonical printing ---------------------------------------------------------

def format_number(v: float) -> str:
    if v == int(v) and abs(v) < 1e15 and not (v == 0 and str(v).startswith("-")):
        return str(int(v))
    return repr(float(v))


_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "**": 4}


def _prec(e: Expr) -> int:
    if isinstance(e, BinOp):
        return _PREC[e.op]
    if isinstance(e, Neg) or (isinstance(e, Num) and (e.value < 0 or str(e.value).startswith("-"))):
        return 3
    return 5


def _wrap(e: Expr, parens: bool) -> str:
    s = format_expr(e)
    return f"({s})" if parens else s


def format_expr(e: Expr) -> str:
    if isinstance(e, Num):
        return format_number(e.value)
    if isinstance(e, Name):
        return e.id
    if isinstance(e, Neg):
        return "-" + _wrap(e.operand, _prec(e.operand) <= 3)
    if isinstance(e, Call):
        return f"{e.fn}({', '.join(format_expr(a) for a in e.args)})"
    p = _PREC[e.op]
    if e.op == "**":
        left = _wrap(e.left, _prec(e.left) <= 4)
        right = _wrap(e.right, _prec(e.right) < 4)
    else:
        left = _wrap(e.left, _prec(e.left) < p)
        right = _wrap(e.right, _prec(e.right) <= p)
    return f"{left} {e.op} {right}"
