"""The primitive table: names, arity and result kind of every callable in the DSL.

The parser, the checker, the interpreter, the compilers, the mutation operators
and the LLM grammar all read this one table, so the language is defined once.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Inputs every optimizer supplies. Only ``w`` and ``g`` are required in a signature.
RESERVED = ("w", "g", "lr", "wd", "step")
TENSOR_INPUTS = ("w", "g")
SCALAR_INPUTS = ("lr", "wd", "step")
BINARY_OPS = ("+", "-", "*", "/", "**")


@dataclass(frozen=True)
class Primitive:
    name: str
    arity: int
    kind: str  # "elementwise" | "reduction" (-> scalar) | "matrix" (tensor in, tensor out)
    doc: str


PRIMITIVES: dict[str, Primitive] = {
    p.name: p
    for p in [
        Primitive("sign", 1, "elementwise", "sign(x): -1, 0 or 1 elementwise"),
        Primitive("abs", 1, "elementwise", "abs(x): |x|"),
        Primitive("sqrt", 1, "elementwise", "sqrt(x): square root (nan below 0)"),
        Primitive("square", 1, "elementwise", "square(x): x * x"),
        Primitive("exp", 1, "elementwise", "exp(x)"),
        Primitive("log", 1, "elementwise", "log(x): natural log"),
        Primitive("tanh", 1, "elementwise", "tanh(x)"),
        Primitive("clip", 2, "elementwise", "clip(x, c): clamp x to [-c, c]"),
        Primitive("maximum", 2, "elementwise", "maximum(x, y): elementwise max"),
        Primitive("minimum", 2, "elementwise", "minimum(x, y): elementwise min"),
        Primitive("interp", 3, "elementwise", "interp(x, y, a) = (1 - a) * x + a * y"),
        Primitive("norm", 1, "reduction", "norm(x): L2 norm of the whole tensor (a scalar)"),
        Primitive("rms", 1, "reduction", "rms(x): root mean square of the whole tensor (a scalar)"),
        Primitive("mean", 1, "reduction", "mean(x): mean of the whole tensor (a scalar)"),
        Primitive("orthogonalize", 1, "matrix",
                  "orthogonalize(x): Newton-Schulz orthogonalization (Muon), x viewed as shape[0] x rest"),
        Primitive("row_normalize", 1, "matrix",
                  "row_normalize(x): each row of the shape[0] x rest view to unit L2 norm"),
        Primitive("col_normalize", 1, "matrix",
                  "col_normalize(x): each column of the shape[0] x rest view to unit L2 norm"),
    ]
}

#: Size limits: the same error as any other refusal; they bound work done on LLM text.
MAX_SOURCE_CHARS = 20_000
MAX_STATEMENTS = 64
MAX_ARGS = 24
MAX_DEPTH = 16
MAX_NODES_PER_EXPR = 96

#: Muon's quintic Newton-Schulz coefficients and iteration count.
NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
NORM_EPS = 1e-7
ROW_EPS = 1e-12


def reference_text() -> str:
    """A short DSL reference, for error messages and LLM prompts."""
    prims = "\n".join(f"  {p.doc}" for p in PRIMITIVES.values())
    return (
        "An update rule is one Python-syntax function:\n"
        "  def name(w, g, <state tensors>, lr, wd, step, <hyper>=<number>, ...):\n"
        "      <name> = <expression>   (one assignment per line)\n"
        "      return w, <every state tensor in signature order>\n"
        "w is the parameter, g its gradient, lr/wd the learning rate and weight decay, step counts from 1.\n"
        "Arguments without a default (other than w, g, lr, wd, step) are state tensors, zero at the start.\n"
        "Arguments with a numeric default are hyperparameters.\n"
        "Expressions: numbers, names, + - * / **, unary minus, and these functions only:\n" + prims
    )
