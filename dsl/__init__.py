"""The update-rule DSL: parse, check, simplify, fingerprint, compile to torch.optim, export."""
from .errors import DSLError
from .interpret import run_rule
from .parser import parse
from .primitives import PRIMITIVES, RESERVED, reference_text
from .program import Arg, Assign, BinOp, Call, Expr, Name, Neg, Num, Program

__all__ = ["DSLError", "parse", "Program", "Arg", "Assign", "BinOp", "Call", "Expr", "Name", "Neg", "Num",
           "PRIMITIVES", "RESERVED", "reference_text", "run_rule"]
