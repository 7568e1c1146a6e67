"""The primitive table: names, arity and result kind of every callable in the DSL.

The parser, the checker, the interpreter, the compilers, the mutation operators
and the LLM grammar all read this one table, so the language is defined once.
"""
from __future__ import annotations

from dataclasses import dataclass

#: A parameter's role, as 0/1 scalar inputs (set by the param group's ``role=``; default: a
#: parameter of 2 or more dimensions is a hidden matrix, a 0-D or 1-D one a vector).
ROLE_INPUTS = ("is_matrix", "is_embedding", "is_head", "is_vector")
ROLES = ("matrix", "embedding", "head", "vector")
#: Inputs every optimizer supplies. Only ``w`` and ``g`` are required in a signature.
RESERVED = ("w", "g", "lr", "wd", "step") + ROLE_INPUTS
TENSOR_INPUTS = ("w", "g")
SCALAR_INPUTS = ("lr", "wd", "step") + ROLE_INPUTS
BINARY_OPS = ("+", "-", "*", "/", "**")

#: State shapes a signature may declare (``r: row``, ``L: rowmat = eye``), on the ``m x n`` view
#: of the parameter (``m = shape[0]``, ``n`` = the product of the rest; a 1-D parameter is
#: ``n x 1``, a 0-D one ``1 x 1``): tensor (the parameter's shape, the default), row (m x 1),
#: col (1 x n), scalar (one number), rowmat (m x m), colmat (n x n).
STATE_KINDS = ("tensor", "row", "col", "scalar", "rowmat", "colmat")
#: Initial values a state may declare besides a number: ``eye`` (the identity; rowmat and colmat
#: only) and ``w`` (a copy of the parameter; tensor states only).
STATE_INITS = ("eye", "w")


@dataclass(frozen=True)
class Primitive:
    """One callable of the DSL. ``kind`` says how the checker types it:

    - ``elementwise``: broadcasts its arguments (the result has the shape of the widest);
    - ``reduction``: a whole-tensor reduction, the result is a scalar;
    - ``matrix``: a parameter-shaped tensor in, one out (identity below 2-D, as ever);
    - ``shape``: a shape scalar of its (non-scalar) argument;
    - ``axis``: a row or column reduction that keeps its axis (m x n -> m x 1 or 1 x n);
    - ``linalg``: matrix algebra and other functions of the whole 2-D view (a column mask, seeded
      Gaussian entries; ``dsl.kinds`` types each one);
    - ``control``: ``refresh``, computed on some steps only;
    - ``group``: a value over all the parameters of the param group.

    Only ``elementwise``, ``reduction`` and ``matrix`` existed before shapes; a rule using any
    other kind, a role input or a non-default state runs on the per-parameter path.
    """
    name: str
    arity: int
    kind: str
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
        # -- shapes, axes and the whole-tensor extremes ------------------------------------------
        Primitive("rows", 1, "shape", "rows(x): the number of rows a of x's a x b view (m for a parameter)"),
        Primitive("cols", 1, "shape", "cols(x): the number of columns b of x's a x b view (n for a parameter)"),
        Primitive("numel", 1, "shape", "numel(x): a * b, the number of entries of x"),
        Primitive("row_mean", 1, "axis", "row_mean(x): mean over each row, (1/b) sum_j x_ij, an a x 1 column "
                  "that broadcasts back against x"),
        Primitive("row_sum", 1, "axis", "row_sum(x): sum over each row, sum_j x_ij (a x 1)"),
        Primitive("col_mean", 1, "axis", "col_mean(x): mean over each column, (1/a) sum_i x_ij (1 x b)"),
        Primitive("col_sum", 1, "axis", "col_sum(x): sum over each column, sum_i x_ij (1 x b)"),
        Primitive("max_of", 1, "reduction", "max_of(x): the largest entry of x (a scalar)"),
        Primitive("min_of", 1, "reduction", "min_of(x): the smallest entry of x (a scalar)"),
        # -- matrix algebra on the 2-D view --------------------------------------------------------
        Primitive("matmul", 2, "linalg", "matmul(a, b): the matrix product a b of the 2-D views "
                  "(e.g. matmul(g, transpose(g)) is the m x m matrix G G^T)"),
        Primitive("transpose", 1, "linalg", "transpose(x): x^T of the 2-D view (m x n -> n x m)"),
        Primitive("inv_root", 3, "linalg", "inv_root(M, p, eps): (S + eps I)^(-1/p) for S = (M + M^T)/2, by the "
                  "eigendecomposition S = Q diag(l) Q^T as Q diag((max(l, 0) + eps)^(-1/p)) Q^T (square M)"),
        Primitive("eigvecs", 1, "linalg", "eigvecs(M): the eigenvectors of S = (M + M^T)/2 as the columns of an "
                  "orthogonal matrix, by descending eigenvalue (square M)"),
        Primitive("qr_q", 1, "linalg", "qr_q(M): Q of M = Q R, R upper triangular with diagonal >= 0 (square M; "
                  "qr_q(matmul(L, Q)) is one step of power iteration)"),
        Primitive("keep_cols", 2, "linalg", "keep_cols(M, r): M with every column after the first r set to 0 (r "
                  "rounded, clamped to [0, b]); keep_cols(eigvecs(L), r) is L's top-r eigenbasis padded with zeros"),
        Primitive("randn_like", 2, "linalg", "randn_like(x, seed): standard normal entries in x's a x b shape, the "
                  "same numbers for the same rounded seed (e.g. refresh(k, randn_like(c, step), c))"),
        # -- periodicity and the group ------------------------------------------------------------
        Primitive("refresh", 3, "control", "refresh(k, new, old): new on steps 1, k + 1, 2k + 1, ... "
                  "((step - 1) mod k = 0, k rounded, at least 1), else old; new is only computed on those steps"),
        Primitive("global_norm", 1, "group", "global_norm(g): sqrt(sum over every parameter p of the param group of "
                  "||g_p||^2) (the argument is the input g or w)"),
    ]
}

#: The primitives that existed before shapes: rules using only these (and plain tensor states, no
#: role inputs) compile to multi-tensor foreach plans; the others run parameter by parameter.
FOREACH_KINDS = ("elementwise", "reduction", "matrix")
FOREACH_PRIMITIVES = tuple(p.name for p in PRIMITIVES.values()
                           if p.kind in FOREACH_KINDS and p.name not in ("max_of", "min_of"))

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
#: The most entries a rowmat/colmat state may have (a 2^13 x 2^13 matrix): beyond it the step
#: refuses the parameter with a message instead of exhausting memory.
MAX_MATRIX_STATE = 1 << 26


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
        "Shaped state (x viewed as m x n: m = shape[0], n = the rest; a vector is n x 1): annotate it,\n"
        "  r: row (m x 1), c: col (1 x n), s: scalar, L: rowmat (m x m), R: colmat (n x n), m: tensor (default),\n"
        "  optionally with an initial value: s: scalar = 1, L: rowmat = eye, z: tensor = w (else 0);\n"
        "  like hyperparameters, states with an initial value come after the arguments without one.\n"
        "Optional 0/1 inputs for the parameter's role: is_matrix, is_embedding, is_head, is_vector\n"
        "  (e.g. u = interp(adam_u, muon_u, is_matrix)).\n"
        "Expressions: numbers, names, + - * / **, unary minus, and these functions only:\n" + prims
    )
