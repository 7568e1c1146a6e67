"""Allowed values of a rule's hyperparameters: what an optimizer refuses at construction.

torch.optim refuses nonsense arguments up front (``Adam(betas=(1.0, 0.999))`` is a
``ValueError``, not NaN parameters one step later). A DSL rule has only numbers in its
signature, so the ranges come from two places:

* **Declared**: the library rules state theirs (``dsl.library.RANGES``: betas and momentum in
  [0, 1), eps >= 0, ...). They apply to a program whose canonical source is the library rule's.
* **Derived** from how a hyperparameter ``h`` is used, for every rule (a rule from the search
  declares nothing), looking at ``h`` written directly as

  - the weight of ``interp(x, y, h)``: [0, 1] (a convex combination, as torch's betas);
  - the argument of ``sqrt(h)``: >= 0, of ``log(h)``: > 0;
  - the bound of ``clip(x, h)``: >= 0;
  - an addend next to a non-negative term (``sqrt``, ``abs``, ``norm``, ``rms``, ``square``,
    ``exp`` of something) in a denominator, ``x / (sqrt(v) + h)``: >= 0 (an eps).

  A derived range that the rule's own default violates is dropped: the rule was written to
  use values outside it (a search may well find ``interp(g, m, 1.2)``, an extrapolation).

Every optimizer also refuses ``lr`` and ``weight_decay`` that are not finite and >= 0, and any
hyperparameter that is NaN. A range here is a plain tuple ``(lo, hi, lo_open, hi_open, why)``
(``None``: unbounded) so that exported modules can carry it as a literal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .library import RANGES, library_name
from .optim_base import in_range
from .program import BinOp, Call, Name, Program, walk

__all__ = ["Range", "parse_range", "hyper_ranges", "BASE_RANGES"]

_NONNEG = ("sqrt", "abs", "norm", "rms", "square", "exp")


@dataclass(frozen=True)
class Range:
    """An interval of allowed values; ``lo``/``hi`` None: unbounded on that side (an open
    unbounded side also excludes infinity, so ``[0, inf)`` means finite and >= 0)."""
    lo: float | None
    hi: float | None
    lo_open: bool
    hi_open: bool
    why: str

    def contains(self, v: float) -> bool:
        return in_range(v, self.lo, self.hi, self.lo_open, self.hi_open)

    def as_tuple(self) -> tuple:
        return (self.lo, self.hi, self.lo_open, self.hi_open, self.why)


_RANGE_RE = re.compile(r"^\s*([\[(])\s*(-?inf|[-+0-9.e]+)\s*,\s*(-?inf|[-+0-9.e]+)\s*([\])])\s*$")


def parse_range(text: str, why: str) -> Range:
    """``"[0, 1)"``, ``"[0, inf)"``, ``"(0, inf)"``: interval notation."""
    m = _RANGE_RE.match(text)
    if not m:
        raise ValueError(f"bad range {text!r}; write it as an interval, e.g. '[0, 1)' or '[0, inf)'")
    lo = None if m.group(2) in ("inf", "-inf") else float(m.group(2))
    hi = None if m.group(3) in ("inf", "-inf") else float(m.group(3))
    return Range(lo, hi, m.group(1) == "(", m.group(4) == ")", why)


#: what every rule's optimizer checks for torch.optim's own arguments
BASE_RANGES: dict[str, tuple[Range, ...]] = {
    "lr": (parse_range("[0, inf)", "the learning rate: finite and >= 0"),),
    "weight_decay": (parse_range("[0, inf)", "finite and >= 0"),),
}


def _derived(program: Program) -> dict[str, list[Range]]:
    hyper = set(program.hyperparams)
    out: dict[str, list[Range]] = {}

    def add(name: str, text: str, why: str) -> None:
        r = parse_range(text, why)
        if r not in out.setdefault(name, []):
            out[name].append(r)

    def hname(e) -> str | None:
        return e.id if isinstance(e, Name) and e.id in hyper else None

    for st in program.body:
        for node in walk(st.value):
            if isinstance(node, Call):
                if node.fn == "interp" and hname(node.args[2]):
                    add(hname(node.args[2]), "[0, 1]", "used as interp's weight")
                elif node.fn == "sqrt" and hname(node.args[0]):
                    add(hname(node.args[0]), "[0, inf)", "used under sqrt")
                elif node.fn == "log" and hname(node.args[0]):
                    add(hname(node.args[0]), "(0, inf)", "used under log")
                elif node.fn == "clip" and hname(node.args[1]):
                    add(hname(node.args[1]), "[0, inf)", "used as clip's bound")
            elif isinstance(node, BinOp) and node.op == "/" and isinstance(node.right, BinOp) \
                    and node.right.op == "+":
                a, b = node.right.left, node.right.right
                for h, other in ((hname(a), b), (hname(b), a)):
                    if h and isinstance(other, Call) and other.fn in _NONNEG:
                        add(h, "[0, inf)", "added to a non-negative denominator (an eps)")
    defaults = program.hyperparams
    return {h: [r for r in rs if r.contains(float(defaults[h]))] for h, rs in out.items()}


def hyper_ranges(program: Program) -> dict[str, tuple[Range, ...]]:
    """The checks of every argument: lr, weight_decay, then each hyperparameter's declared
    (library) and derived ranges, declared first (see the module docstring)."""
    out: dict[str, list[Range]] = {k: list(v) for k, v in BASE_RANGES.items()}
    name = library_name(program)
    if name is not None:
        for h, text in RANGES.get(name, {}).items():
            out.setdefault(h, []).append(parse_range(text, f"declared by the library rule {name}"))
    for h, rs in _derived(program).items():
        lst = out.setdefault(h, [])
        lst.extend(r for r in rs if r not in lst)
    return {k: tuple(v) for k, v in out.items() if v}
