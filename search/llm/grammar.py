"""The DSL's grammar as a Lark grammar, for grammar-constrained decoding (llguidance).

Written once, generated from ``dsl.primitives`` and a parent's names, so that every
string the grammar accepts also passes ``dsl.parse`` (the security boundary stays
``dsl.parse``: the grammar only makes valid proposals likely, it validates nothing).

What a context-free grammar cannot say directly is encoded by expanding the grammar
over a small finite state, tracked in the nonterminal names:

* **Signature and return.** The parent's argument names and order are kept (the
  hyperparameter defaults are free numbers), so the return line is fixed:
  ``return w, <state tensors in signature order>``.
* **Defined before use.** Temporaries (names the body may introduce) can be read only
  after their first assignment. The set of temporaries defined so far is part of the
  state: with K temporaries there are at most 2**K expression sub-grammars, which differ
  only in the names they may read.
* **Kinds.** Every expression has a kind, tensor or scalar (``dsl.kinds``). Each level
  of the expression grammar comes in a tensor and a scalar version, so that ``w``, ``g``,
  state tensors and tensor temporaries are only assigned tensor expressions, scalar
  temporaries only scalar ones, and ``orthogonalize`` & co. only get a tensor argument.
  A sum/product is a tensor iff one of its terms is; the grammar splits at the first
  tensor term so the two versions stay unambiguous.
* **Read-only inputs** (``lr``, ``wd``, ``step``, hyperparameters) are never targets.
* **Size.** Statements are counted (at most ``max_statements``); literals are bounded so
  they are finite floats; a sum or product has at most ``REPEAT + 1`` terms and unary minus
  is not repeated, which keeps depth low, but the parser's expression size limits (depth
  16, 96 nodes) are not encoded: a very long line can still be refused by ``dsl.parse``.

Layout is canonical (``Program.source()``): four-space indent, spaces around binary
operators, ``", "`` between arguments.

Shapes: the grammar knows two kinds, tensor and scalar, so it covers the part of the language
whose values are one or the other: the shape scalars (``rows(g)``), ``max_of``/``min_of``,
``refresh``, ``global_norm(g)`` and the role inputs are in it, and row/col reductions as factors
of a tensor product (``g / sqrt(row_mean(g * g) + 1e-8)``); other uses of row/col values, matrix
algebra and shaped state (``r: row``, ``L: rowmat = eye``) are not. ``grammar_supports(program)`` says
whether a rule lies in the grammar; mutating one that does not is left unconstrained.
"""
from __future__ import annotations

import keyword
from collections.abc import Sequence
from dataclasses import dataclass

from dsl.kinds import extensions, statement_kinds
from dsl.primitives import PRIMITIVES, RESERVED, SCALAR_INPUTS
from dsl.program import Call, walk

#: Temporaries offered on top of the parent's own (so a mutation can name a new quantity).
EXTRA_TEMPS = ("u:tensor", "d:tensor", "c:scalar")

#: The signature used when a request gives no ``grammar_names``: AdamW-shaped.
DEFAULT_NAMES = ("w", "g", "m", "v", "lr", "wd", "step", "beta1=0.9", "beta2=0.999", "eps=1e-08",
                 "mhat:tensor", "vhat:tensor") + EXTRA_TEMPS

#: Most extra terms in one sum / factors in one product (bounds the left-nested BinOp depth).
REPEAT = 5
_NUMBER = r"/(0|[1-9][0-9]{0,11})(\.[0-9]{1,12})?([eE][-+]?[0-9]{1,2})?/"


@dataclass(frozen=True)
class GrammarSpec:
    """The parsed ``grammar_names``: signature entries and typed temporaries."""
    signature: tuple[tuple[str, bool], ...]     # (name, is_hyperparameter), def-line order
    temps: tuple[tuple[str, str], ...]          # (name, "tensor" | "scalar")

    @property
    def tensor_inputs(self) -> list[str]:
        return [n for n, hyper in self.signature if not hyper and n not in SCALAR_INPUTS]

    @property
    def scalar_inputs(self) -> list[str]:
        return [n for n, hyper in self.signature if hyper or n in SCALAR_INPUTS]

    @property
    def states(self) -> list[str]:
        return [n for n in self.tensor_inputs if n not in RESERVED]


#: primitive kinds outside the grammar (their values are neither tensor nor scalar)
UNSUPPORTED_KINDS = ("axis", "linalg")


def grammar_supports(program) -> bool:
    """Whether ``program`` (a ``dsl.Program``) lies in the grammar: no shaped or initialised state,
    no row/col reduction or matrix algebra (see the module docstring)."""
    if any(e.startswith("state ") for e in extensions(program)):
        return False
    return not any(isinstance(n, Call) and PRIMITIVES[n.fn].kind in UNSUPPORTED_KINDS
                   for st in program.body for n in walk(st.value))


def _ident_ok(name: str) -> bool:
    return name.isidentifier() and name.isascii() and not keyword.iskeyword(name)


def parse_grammar_names(names: Sequence[str] | None, max_temps: int = 5) -> GrammarSpec:
    """Read ``grammar_names`` (see ``ChatRequest.grammar_names``); raises ValueError on bad input."""
    names = list(DEFAULT_NAMES if names is None else names)
    sig: list[tuple[str, bool]] = []
    temps: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in names:
        entry = str(raw).strip()
        if ":" in entry:
            name, kind = (x.strip() for x in entry.split(":", 1))
            if kind not in ("tensor", "scalar"):
                raise ValueError(f"grammar_names entry {raw!r}: the kind after ':' must be 'tensor' or "
                                 "'scalar'")
            # a temporary that is already a signature name, a primitive or a duplicate is skipped
            if _ident_ok(name) and name not in seen and name not in PRIMITIVES and name not in RESERVED:
                temps.append((name, kind))
                seen.add(name)
            continue
        if temps:
            raise ValueError(f"grammar_names entry {raw!r}: signature entries must come before the "
                             "temporaries ('name:tensor' / 'name:scalar')")
        name, hyper = (entry.split("=", 1)[0].strip(), True) if "=" in entry else (entry, False)
        if not _ident_ok(name) or name in PRIMITIVES:
            raise ValueError(f"grammar_names entry {raw!r}: {name!r} is not a usable argument name")
        if name in seen:
            raise ValueError(f"grammar_names entry {raw!r}: {name!r} appears twice")
        if hyper and name in RESERVED:
            raise ValueError(f"grammar_names entry {raw!r}: {name!r} is supplied by the optimizer and "
                             "cannot be a hyperparameter")
        sig.append((name, hyper))
        seen.add(name)
    for req in ("w", "g"):
        if req not in seen or (req, False) not in sig:
            raise ValueError(f"grammar_names must include {req!r} in the signature (got {names})")
    return GrammarSpec(tuple(sig), tuple(temps[:max_temps]))


def dsl_grammar_names(program, extra: Sequence[str] = EXTRA_TEMPS, max_temps: int = 5) -> list[str]:
    """``grammar_names`` for mutating ``program`` (a ``dsl.Program``): its signature, then its
    own temporaries with their kinds (first ones first), then ``extra`` temporaries."""
    sig = [a.name if a.default is None else f"{a.name}={a.default!r}" for a in program.args]
    arg_names = set(program.arg_names)
    kinds: dict[str, set[str]] = {}
    order: list[str] = []
    for st, k in zip(program.body, statement_kinds(program)):
        if st.target in arg_names:
            continue
        if st.target not in kinds:
            order.append(st.target)
        kinds.setdefault(st.target, set()).add(k)
    temps = [f"{t}:{next(iter(kinds[t]))}" for t in order if len(kinds[t]) == 1]
    for e in extra:
        if e.split(":", 1)[0] not in kinds and e.split(":", 1)[0] not in arg_names:
            temps.append(e)
    return sig + temps[:max_temps]


def _lit(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _alts(items: Sequence[str]) -> str:
    return " | ".join(items)


def dsl_lark_grammar(names: Sequence[str] | None = None, *, max_statements: int = 12,
                     max_temps: int = 5, fn_name: str | None = None) -> str:
    """A Lark grammar (llguidance dialect) for one update rule with the given names.

    ``names``: see ``ChatRequest.grammar_names`` (None: an AdamW-shaped signature).
    ``fn_name``: force the function name (default: any identifier that is not a keyword).
    """
    spec = parse_grammar_names(names, max_temps)
    if max_statements < 1:
        raise ValueError("max_statements must be >= 1")
    temps = spec.temps
    out: list[str] = []
    rule = out.append

    # -- header: def line with the parent's argument names, free hyperparameter values --------
    parts = []
    for i, (name, hyper) in enumerate(spec.signature):
        sep = "" if i == 0 else ", "
        parts.append(_lit(sep + name + "=") + " num" if hyper else _lit(sep + name))
    fname = _lit(fn_name) if fn_name else "FNAME"
    rule(f'start: "def " {fname} "(" {" ".join(parts)} "):\\n" body_0_0')
    kws = sorted(k for k in keyword.kwlist if k.islower())
    rule("FNAME: /[a-z_][a-z0-9_]{0,30}/ & ~KEYWORD")
    rule("KEYWORD: " + _alts(_lit(k) for k in kws))
    rule(f"NUMBER: {_NUMBER}")
    rule('num: NUMBER | "-" NUMBER')
    rule('add: " + " | " - "')
    rule('mul: " * " | " / "')
    rule('pow: " ** "')
    # every line is "    " then one terminal that ends with " = " (or the return): no terminal is a
    # prefix of another, so a temporary may start with a state's name (mask after m)
    ret = "return " + ", ".join(["w"] + spec.states) + "\n"
    rule(f'ret: "    " {_lit(ret)}')

    # primitives grouped by (kind, arity): shared by every expression sub-grammar
    groups: dict[tuple[str, int], list[str]] = {}
    for p in PRIMITIVES.values():
        if p.kind not in UNSUPPORTED_KINDS:
            groups.setdefault((p.kind, p.arity), []).append(p.name)
    for (kind, arity), fns in sorted(groups.items()):
        rule(f"fn_{kind}_{arity}: " + _alts(_lit(f + "(") for f in fns))
    rule("fn_axis: " + _alts(_lit(p.name + "(") for p in PRIMITIVES.values() if p.kind == "axis"))

    # -- expression sub-grammar for each set of defined temporaries (bitmask over temps) ------
    def expr_rules(mask: int) -> None:
        x = f"_{mask}"
        tn = spec.tensor_inputs + [t for j, (t, k) in enumerate(temps) if mask >> j & 1 and k == "tensor"]
        sn = spec.scalar_inputs + [t for j, (t, k) in enumerate(temps) if mask >> j & 1 and k == "scalar"]
        rule(f"e_t{x}: (e_s{x} add)? p_t{x} (add p_a{x}){{0,{REPEAT}}}")
        rule(f"e_s{x}: p_s{x} (add p_s{x}){{0,{REPEAT}}}")
        rule(f"e_a{x}: e_t{x} | e_s{x}")
        rule(f"p_t{x}: (p_s{x} mul)? u_t{x} (mul u_a{x}){{0,{REPEAT}}}")
        rule(f"p_s{x}: u_s{x} (mul u_s{x}){{0,{REPEAT}}}")
        rule(f"p_a{x}: p_t{x} | p_s{x}")
        rule(f'u_t{x}: "-"? w_t{x}')
        rule(f'u_s{x}: "-"? w_s{x}')
        # a row/col reduction (m x 1, 1 x n) only as a factor next to a tensor: the product stays one
        rule(f"u_a{x}: u_t{x} | u_s{x} | u_x{x}")
        rule(f'u_x{x}: "-"? fn_axis e_t{x} ")"')
        rule(f"w_t{x}: a_t{x} (pow u_a{x})? | a_s{x} pow u_t{x}")
        rule(f"w_s{x}: a_s{x} (pow u_s{x})?")
        rule(f'a_t{x}: tn{x} | "(" e_t{x} ")" | call_t{x}')
        rule(f'a_s{x}: NUMBER | "(" e_s{x} ")" | call_s{x}' + (f" | sn{x}" if sn else ""))
        rule(f"tn{x}: " + _alts(_lit(n) for n in tn))
        if sn:
            rule(f"sn{x}: " + _alts(_lit(n) for n in sn))
        call_t, call_s = [], []
        for (kind, arity) in sorted(groups):
            head = f"fn_{kind}_{arity}"

            def call(args: list[str], head: str = head) -> str:
                sep = ' ", " '
                return f'{head} {sep.join(a + x for a in args)} ")"'
            if kind == "elementwise":
                for k in range(arity):  # the first tensor argument is at position k
                    call_t.append(call(["e_s"] * k + ["e_t"] + ["e_a"] * (arity - k - 1)))
                call_s.append(call(["e_s"] * arity))
            elif kind == "matrix":
                call_t.append(call(["e_t"] + ["e_a"] * (arity - 1)))
            elif kind == "reduction":
                call_s.append(call(["e_a"] * arity))
            elif kind == "shape":
                call_s.append(call(["e_t"]))
            elif kind == "control":  # refresh(k, new, old): a tensor when new or old is one
                call_t.extend([call(["e_s", "e_t", "e_a"]), call(["e_s", "e_s", "e_t"])])
                call_s.append(call(["e_s", "e_s", "e_s"]))
            elif kind == "group":
                call_s.append(f'{head} "g)"')
            else:  # a new primitive kind must be taught to the grammar, not silently dropped
                raise ValueError(f"dsl_lark_grammar: unknown primitive kind {kind!r}")
        rule(f"call_t{x}: " + _alts(call_t))
        rule(f"call_s{x}: " + _alts(call_s))

    # -- statements and the bounded body ------------------------------------------------------
    tensor_targets = ["w", "g"] + spec.states
    done_expr: set[int] = set()
    pending = [(0, 0)]
    seen: set[tuple[int, int]] = set()
    while pending:
        mask, count = pending.pop()
        if (mask, count) in seen:
            continue
        seen.add((mask, count))
        if mask not in done_expr:
            done_expr.add(mask)
            expr_rules(mask)
            x = f"_{mask}"
            tt = tensor_targets + [t for j, (t, k) in enumerate(temps) if mask >> j & 1 and k == "tensor"]
            st = [t for j, (t, k) in enumerate(temps) if mask >> j & 1 and k == "scalar"]
            alts = [f'"    " ({_alts(_lit(t + " = ") for t in tt)}) e_t{x} "\\n"']
            if st:
                alts.append(f'"    " ({_alts(_lit(t + " = ") for t in st)}) e_s{x} "\\n"')
            rule(f"same{x}: " + _alts(alts))
            for j, (t, k) in enumerate(temps):
                if not mask >> j & 1:
                    rule(f'new{x}_{j}: "    " {_lit(t + " = ")} e_{k[0]}{x} "\\n"')
        alts = [] if count == 0 else ["ret"]
        if count < max_statements:
            alts.append(f"same_{mask} body_{mask}_{count + 1}")
            pending.append((mask, count + 1))
            for j in range(len(temps)):
                if not mask >> j & 1:
                    alts.append(f"new_{mask}_{j} body_{mask | 1 << j}_{count + 1}")
                    pending.append((mask | 1 << j, count + 1))
        rule(f"body_{mask}_{count}: " + _alts(alts))
    return "\n".join(out) + "\n"


def request_grammar(grammar: str | None, grammar_names: Sequence[str] | None = None) -> str | None:
    """The Lark text for a request's ``grammar`` field: "dsl" -> the DSL grammar, else as given."""
    if grammar is None or grammar == "":
        return None
    if grammar.strip().lower() == "dsl":
        return dsl_lark_grammar(grammar_names)
    return grammar
