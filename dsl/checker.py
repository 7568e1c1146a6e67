"""The checker: abstract execution of a rule before anything runs it.

It infers scalar vs tensor for every name (``dsl.kinds``) and computes
*loop-carried* liveness. A rule is the body of a loop::

    for step in 1, 2, ...:  (w, states) = body(w, g, states, lr, wd, step, hyper)

so a state tensor's value at the end of a step is needed only if the *next*
step reads it before overwriting it. Liveness is therefore solved as a least
fixed point across the step boundary: start with ``live_out = {w}`` (the
parameter is the only thing the outside world reads), run the usual backward
pass over the straight-line body, and add to ``live_out`` every state that is
live on entry; repeat until nothing changes. Starting from the smallest set
(not from "every returned state") is what also kills a state that only feeds
itself, and a state the next step overwrites before reading, together with the
statements computing it (the Lion paper's raw winner kept such a ``cosh`` line
because its cleaner looked at one step only).

Findings are reported, never refused; ``dsl.simplify`` removes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import DSLError
from .interpret import binop, call  # the reference semantics
from .kinds import input_kinds, statement_kinds
from .parser import parse
from .primitives import PRIMITIVES, RESERVED
from .program import Assign, BinOp, Call, Expr, Neg, Num, Program, format_expr, names_in, walk


@dataclass(frozen=True)
class DeadStatement:
    """A statement whose result can never influence ``w``."""
    index: int    # position in ``program.body``
    line: int     # source line (canonical line when the program was built in code)
    target: str
    text: str     # "target = expression"
    reason: str


@dataclass(frozen=True)
class Liveness:
    """Result of the loop-carried liveness fixed point."""
    live: tuple[bool, ...]          # per statement
    live_in: frozenset[str]         # names whose incoming value some live statement reads
    live_out: frozenset[str]        # returned names the next step (or the caller) needs


@dataclass
class CheckReport:
    """What the checker found. ``clean`` means nothing to report."""
    program: Program
    kinds: dict[str, str]                  # every name -> its kind after the body (inputs first)
    statement_kinds: tuple[str, ...]       # kind of each statement's value
    dead: tuple[DeadStatement, ...]
    unused_inputs: tuple[str, ...]         # signature names whose value no live statement reads
    dead_states: tuple[str, ...]           # states not carried to the next step (memory for nothing)
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def clean(self) -> bool:
        return not (self.dead or self.unused_inputs or self.dead_states or self.warnings)

    def summary(self) -> str:
        """Human-readable text (the ``optforge rule check`` output, minus the fingerprint)."""
        p = self.program
        out = [f"rule {p.name}: {len(p.body)} statements, {len(p.state_names)} state tensor(s), "
               f"{len(p.hyperparams)} hyperparameter(s), size {p.size()}"]
        out.append("kinds: " + ", ".join(f"{n}: {k}" for n, k in self.kinds.items()))
        if self.dead:
            out.append("dead code:")
            out.extend(f"  line {d.line}: {d.text}    # {d.reason}" for d in self.dead)
        else:
            out.append("dead code: none")
        out.append("unused inputs: " + (", ".join(self.unused_inputs) or "none"))
        if self.dead_states:
            out.append("dead states: " + ", ".join(self.dead_states))
        if self.warnings:
            out.append("warnings:")
            out.extend(f"  - {w}" for w in self.warnings)
        return "\n".join(out)


def validate(program: Program) -> None:
    """Raise ``DSLError`` unless ``program`` is one ``parse`` would accept.

    Programs built in code (mutation operators) bypass the parser, so the
    checker re-validates through the canonical text: one definition of validity.
    """
    try:
        text = program.source()
    except (ValueError, OverflowError, TypeError, AttributeError) as e:
        raise DSLError(f"program cannot be printed ({type(e).__name__}: {e}); "
                       "numbers must be finite floats and names plain identifiers") from None
    parse(text)


def liveness(program: Program) -> Liveness:
    """Loop-carried liveness, least fixed point across the step boundary (see module doc)."""
    states = set(program.state_names)
    live_out: set[str] = {"w"}
    while True:
        live = set(live_out)
        flags = [False] * len(program.body)
        for i in range(len(program.body) - 1, -1, -1):
            s = program.body[i]
            if s.target in live:
                flags[i] = True
                live.discard(s.target)
                live |= names_in(s.value)
        new_out = {"w"} | (live & states)
        if new_out == live_out:
            return Liveness(tuple(flags), frozenset(live), frozenset(live_out))
        live_out = new_out


def _line(s: Assign, index: int) -> int:
    return s.line or index + 2  # canonical text: the def is line 1


def _dead_reason(program: Program, i: int) -> str:
    s = program.body[i]
    readers, overwrite = False, None
    for j in range(i + 1, len(program.body)):
        later = program.body[j]
        readers |= s.target in names_in(later.value)
        if later.target == s.target:
            overwrite = _line(later, j)
            break
    if readers:
        return "read only by dead code"
    if overwrite is not None:
        return f"overwritten at line {overwrite} before it is read"
    if s.target in program.state_names:
        return (f"state '{s.target}' is overwritten by the next step before it is read, "
                "so this value is never used")
    return "result never used"


def _constant_trouble(program: Program) -> list[str]:
    """Number-only subexpressions that evaluate to nan/inf (e.g. log(0), 1/0)."""

    def value(e: Expr):
        if isinstance(e, Num):
            return np.float64(e.value)
        if isinstance(e, Neg):
            v = value(e.operand)
            return None if v is None else -v
        if isinstance(e, BinOp):
            a, b = value(e.left), value(e.right)
            return None if a is None or b is None else binop(e.op, a, b)
        if isinstance(e, Call):
            if PRIMITIVES[e.fn].kind not in ("elementwise", "reduction"):
                return None  # refresh, shapes, ...: not a function of its numbers alone
            vals = [value(a) for a in e.args]
            return None if any(v is None for v in vals) else call(e.fn, vals)
        return None

    out = []
    for i, s in enumerate(program.body):
        for node in walk(s.value):
            if isinstance(node, (BinOp, Call, Neg)):
                v = value(node)
                if v is not None and not np.isfinite(v):
                    out.append(f"line {_line(s, i)}: '{format_expr(node)}' is always {float(v)}")
                    break
    return out


def check(program: Program) -> CheckReport:
    """Analyse a valid program; raises ``DSLError`` only if it is not valid."""
    validate(program)
    skinds = statement_kinds(program)
    kinds = input_kinds(program)
    for s, k in zip(program.body, skinds):
        kinds[s.target] = k
    lv = liveness(program)
    dead = tuple(DeadStatement(i, _line(s, i), s.target, f"{s.target} = {format_expr(s.value)}",
                               _dead_reason(program, i))
                 for i, s in enumerate(program.body) if not lv.live[i])
    unused = tuple(n for n in program.arg_names if n not in lv.live_in)
    dead_states = tuple(n for n in program.state_names if n not in lv.live_out)

    assigned = {s.target for s in program.body}
    live_assigned = {s.target for s, f in zip(program.body, lv.live) if f}
    warnings = []
    if "w" not in live_assigned:
        warnings.append("w is never updated: the rule leaves the parameter unchanged")
    if "g" in program.arg_names and "g" not in lv.live_in:
        warnings.append("the update does not depend on the gradient g")
    for n in program.state_names:
        if n not in assigned:
            warnings.append(f"state '{n}' is never assigned: it stays zero")
        elif n in dead_states:
            warnings.append(f"state '{n}' is not carried between steps (the next step overwrites it "
                            "before reading, or only dead code reads it); simplify removes it")
    for n in program.hyperparams:
        if n not in lv.live_in:
            warnings.append(f"hyperparameter '{n}' has no effect on the update")
    for n in program.arg_names:
        if n in RESERVED[2:] and n not in lv.live_in:
            warnings.append(f"input '{n}' is in the signature but has no effect on the update")
    warnings.extend(_constant_trouble(program))
    return CheckReport(program, kinds, tuple(skinds), dead, unused, dead_states, tuple(warnings))


def check_source(text: str) -> CheckReport:
    """Parse then check; raises ``DSLError`` (with line and column) on a bad program."""
    return check(parse(text))


__all__ = ["CheckReport", "DeadStatement", "Liveness", "check", "check_source", "liveness", "validate"]
