"""The update-rule DSL: parse, check, simplify, fingerprint, compile to torch.optim, export.

The language: ``program`` (the immutable AST, canonical source, tree traversal and node
replacement), ``primitives`` (the callable table), ``kinds`` (shape kinds: scalar, tensor, row,
col, rowmat, colmat, ...; ``extensions`` says whether a rule needs the per-parameter path),
``shaped`` (the runtime of rules using shapes, on the m x n view),
``errors`` (``DSLError``). Reading a rule: ``parser`` (``parse``: Python syntax through ``ast``,
never executed - the security boundary for LLM text) and ``checker`` (abstract execution:
kinds, dead code, numeric trouble). Meaning: ``interpret`` (the reference interpreter),
``simplify`` (same update, smaller), ``fingerprint`` (hash of the function computed). Running:
``compile`` (``to_optimizer``: a torch.optim class over ``optim_base.RuleOptimizer``, built by the
multi-tensor compiler in ``foreach/``; rules using shapes run per parameter), ``ranges`` (argument
checks), ``export`` (a standalone module that needs only torch; ``export_shaped`` for rules using
shapes, ``export_parts`` the pieces both write). Rules: ``library`` (known rules, the search's seeds; the modern
optimizer zoo in ``zoo`` and ``zoo_shaped``) and
``discovered`` (rules optforge's own campaigns found, with their verification).
"""
from .checker import CheckReport, DeadStatement, check, check_source, liveness
from .compile import class_name, global_norm_inputs, to_optimizer
from .discovered import DISCOVERED, PROVENANCE, RETIRED, list_discovered, provenance_line, retired_line
from .errors import DSLError
from .export import export_python
from .fingerprint import fingerprint
from .interpret import run_rule
from .kinds import SCALAR, TENSOR, extensions, input_kinds, per_element, statement_kinds
from .library import RULES, get_rule, list_rules
from .optim_base import RuleOptimizer
from .parser import parse
from .primitives import PRIMITIVES, RESERVED, ROLE_INPUTS, ROLES, SCALAR_INPUTS, STATE_KINDS, reference_text
from .program import (
    Arg,
    Assign,
    BinOp,
    Call,
    Expr,
    Name,
    Neg,
    NodePath,
    Num,
    Program,
    children,
    format_expr,
    names_in,
    nodes,
    replace_at,
    replace_node,
    statement_nodes,
    substitute,
    walk,
    with_children,
)
from .ranges import Range, hyper_ranges
from .simplify import simplify

__all__ = ["DSLError", "parse", "Program", "Arg", "Assign", "BinOp", "Call", "Expr", "Name", "Neg", "Num",
           "PRIMITIVES", "RESERVED", "reference_text", "run_rule", "CheckReport", "DeadStatement", "check",
           "check_source", "simplify", "fingerprint", "get_rule", "list_rules", "DISCOVERED", "list_discovered",
           "to_optimizer", "export_python", "RuleOptimizer", "Range", "hyper_ranges", "NodePath", "children",
           "with_children", "nodes", "replace_at", "statement_nodes", "replace_node", "liveness",
           "PROVENANCE", "RETIRED", "provenance_line", "retired_line", "SCALAR", "TENSOR", "input_kinds",
           "statement_kinds", "RULES",
           "SCALAR_INPUTS", "format_expr", "names_in", "substitute", "walk", "extensions", "per_element", "class_name",
           "global_norm_inputs",
           "ROLE_INPUTS", "ROLES", "STATE_KINDS"]
