"""The zoo's rules that need shapes: axis reductions, shaped state, matrix algebra, roles.

Merged into ``dsl.library`` like ``dsl.zoo``; tests/test_library_zoo.py checks each against
its reference on 1-D and 2-D parameters (and 3-D where the reference views a tensor as
``shape[0] x rest`` too). Every tensor here is the ``m x n`` view of the parameter (``m =
shape[0]``); a 1-D parameter is ``n x 1``.

* ``adafactor``: torch.optim.Adafactor at its defaults: ``beta2_t = 1 - t^-0.8``, factored
  second moment ``R C / max(mean(R), eps1)`` from row and column means of ``g^2``, update
  ``g / sqrt(max(v, eps1^2))`` divided by ``max(1, rms / d)``, step
  ``max(eps2, rms(w)) min(lr, 1/sqrt(t))`` (``rms(w)`` before the decay ``w (1 - lr wd)``).
  torch's ``eps1`` default is the parameter dtype's machine epsilon; here it is a number
  (default float32's, 2^-23). A 1-D parameter (``n x 1``) gets ``R = v`` elementwise and ``C =
  mean(R)`` (both averages are linear), so ``R C / mean(R)`` is torch's unfactored ``v`` to
  rounding. torch factors a tensor of 3 or more dimensions over its last two; this rule over
  ``shape[0] x rest``, so those agree only for 2-D and 1-D parameters.
* ``adam_mini``: Adam-mini v1.1 (Zhang et al. 2024, zyushun/Adam-mini): one second moment per
  output neuron (row) of a matrix, one per whole tensor for vectors, Adam's step otherwise. The
  reference shares one moment per attention head for query and key matrices, which needs the
  head count: here they get one per row like the other matrices.
* ``spam``: SPAM (Huang et al. 2025): AdamW with eps added to the uncorrected root and decay
  after the step; moments reset every ``delta_t`` steps (``c = step mod delta_t`` is a scalar
  state); spike clipping ``g -> clip(g, sqrt(threshold v))`` from step ``accu`` on and not in the
  first ``accu`` steps after a reset; the global step keeps counting in the bias corrections;
  after a reset the step is scaled by ``1 - 0.99 (1 + cos(pi c / (warmup + 1))) / 2`` for
  ``warmup`` steps. The language has no cosine: it is the Taylor polynomial to ``x^32`` on
  ``[0, pi]`` (truncation below 1e-21, so it is cos to rounding).
* ``adamp``: clovaai/AdamP: Adam (eps on the corrected root); for a parameter of 2 or more
  dimensions, when every row's ``|cos(g_i, w_i)|`` is below ``delta / sqrt(n)`` the row-wise
  radial part of the step is removed, else the same test on the whole tensor (bound
  ``delta / sqrt(mn)``) removes the tensor's radial part; either way the decay is scaled by
  ``wd_ratio``.
* ``scion``: LIONS-EPFL/scion, one norm per role (``role=`` in the param group): hidden
  matrices Spectral (Newton-Schulz times ``sqrt(m / n)``), embeddings ColNorm transposed (each
  row to rms 1: ``g / (|g_i| / sqrt(n) + 1e-8)``), the output head Sign (``sign(g) / n``),
  vectors BiasRMS (``g / (rms(g) + 1e-8)``); momentum ``buf = (1 - a) buf + a g``; Scion's
  constrained form ``w (1 - lr)`` is ``wd = 1`` (``wd = 0``: unconstrained). The reference
  runs Newton-Schulz in bfloat16; this rule in the parameter's dtype. A conv kernel (3-D or
  4-D) is a matrix here (``shape[0] x rest``, factor ``sqrt(m / n)``); the reference's Auto norm
  scales kernels as ``sqrt(out / in) / k`` (or ``/ k^2``) instead.
* ``swan``: SWAN (Ma et al. 2024), no state: ``G~ = (G - row mean) / row std`` (population
  std over the n columns), whitened ``G~ (G~^T G~ + eps I)^(-1/2)`` (equal to the paper's
  ``(G~ G~^T)^(-1/2) G~`` through the SVD, and n x n instead of m x m), rescaled to the norm of
  ``G~``. The paper computes the root by Newton-Schulz iterations; this rule exactly
  (eigendecomposition). Parameters that are not hidden matrices take the plain gradient step.
* ``shampoo``: Shampoo (Gupta et al. 2018, Algorithm 1): ``L += G G^T``, ``R += G^T G`` from
  ``eps I``, ``W -= lr L^(-1/4) G R^(-1/4)``, the inverse roots recomputed every ``every``
  steps (1: the paper's algorithm), decoupled decay.
* ``galore``: GaLore (Zhao et al. 2024; jiaweizzhao/GaLore, ``proj_type="std"``) with the AdamW it
  ships (eps after the uncorrected root, step ``lr sqrt(1 - beta2^t) / (1 - beta1^t)``, then
  ``w -= lr wd w``). On steps 1, every + 1, ... a hidden matrix's ``G`` (``m x n`` view) gets
  the top-``rank`` singular vectors of its smaller side: ``m >= n``: ``V_r`` (``R = G V_r``),
  else ``U_r`` (``R = U_r^T G``); Adam runs on ``R`` (moments kept across refreshes, as in the
  reference) and ``N = M / (sqrt(V) + eps)`` goes back as ``scale N V_r^T`` or ``scale U_r N``.
  Here the basis is ``keep_cols(eigvecs(G^T G), rank)`` (``n x n``, zero columns after the
  first ``rank``), so ``R`` and the moments are ``m x n`` with zero columns (rows) past the
  rank: the same numbers as the rank-r algorithm, in full-size state (no memory saving). The
  singular vectors come from the eigendecomposition of ``G^T G`` (``G G^T``), not an SVD of
  ``G``: the same subspace, signs as ``eigh`` returns them (an SVD's are arbitrary too, and
  matter only through the moments kept across a refresh); in float32 the squared matrix
  loses precision on small singular values. Both bases are computed (the larger one unused).
  Parameters that are not hidden matrices (vectors; embeddings and heads by ``role=``) take
  that AdamW, as the reference is applied to attention and MLP matrices only; a conv kernel is
  its ``shape[0] x rest`` matrix (the reference has a separate tensor projector).
* ``apollo_mini``: APOLLO-Mini (Zhu et al. 2024; zhuhanqing/APOLLO ``apollo.py``, rank 1,
  ``scale_type="tensor"``, ``scale=128``, random projection): on steps 1, every + 1, ... a
  standard normal projection of the smaller side (``m >= n``: ``p`` is ``1 x n`` and ``R = G
  p^T`` is ``m x 1``; else ``p`` is ``m x 1`` and ``R = p^T G`` is ``1 x n``; the reference's
  ``1 / sqrt(rank)`` is 1); Adam moments of ``R`` (as row or col state), ``f = ||M / (sqrt(V) +
  eps)|| / (||R|| + 1e-8)``, the update is the raw gradient ``S = f G``; Fira's norm-growth
  limiter from the second step: ``S /= max(||S|| / (s + 1e-8), 1.01) / 1.01`` with ``s`` the
  previous ``||S||`` (a scalar state); step ``lr sqrt(1 - beta2^t) / (1 - beta1^t) sqrt(scale)
  S``, then ``w -= lr wd w``. The Gaussian numbers are ``randn_like`` seeded with ``seed +
  step`` (the reference chains seeds from the parameter's index, so every parameter draws its
  own; here same-shaped parameters share a draw). Vectors (``is_vector``) take the plain AdamW
  above in the row moments; every other role gets APOLLO-Mini. Channel-wise APOLLO (rank ``r``)
  is not in the library.
"""
from __future__ import annotations

#: cos(x) on [0, pi] as its Taylor polynomial through x^32 in Horner form over y = x^2, in four
#: pieces (the language bounds an expression's depth): 1 - y/2 (1 - y/12 (1 - ... (1 - y/992)))
_COS = """\
    c4 = 1 - y / 650 * (1 - y / 756 * (1 - y / 870 * (1 - y / 992)))
    c3 = 1 - y / 306 * (1 - y / 380 * (1 - y / 462 * (1 - y / 552 * c4)))
    c2 = 1 - y / 90 * (1 - y / 132 * (1 - y / 182 * (1 - y / 240 * c3)))
    cosx = 1 - y / 2 * (1 - y / 12 * (1 - y / 30 * (1 - y / 56 * c2)))
"""

SHAPED_RULES: dict[str, str] = {
    "adafactor": """\
def adafactor(w, g, r: row, c: col, lr, wd, step, beta2_decay=-0.8, eps1=1.1920928955078125e-07,
              eps2=0.001, d=1.0):
    alpha = maximum(eps2, rms(w)) * minimum(lr, 1 / sqrt(step))
    w = w * (1 - lr * wd)
    b = step ** beta2_decay
    r = interp(r, row_mean(g * g), b)
    c = interp(c, col_mean(g * g), b)
    u = g / sqrt(maximum(r * c / maximum(mean(r), eps1), eps1 * eps1))
    w = w - alpha / maximum(1, rms(u) / d) * u
    return w, r, c
""",
    "adam_mini": """\
def adam_mini(w, g, m, v: row, lr, wd, step, is_vector, beta1=0.9, beta2=0.999, eps=1e-8):
    w = w * (1 - lr * wd)
    m = interp(g, m, beta1)
    v = interp(interp(row_mean(g * g), mean(g * g), is_vector), v, beta2)
    w = w - lr * (m * (1 / (1 - beta1 ** step) / (sqrt(v) / sqrt(1 - beta2 ** step) + eps)))
    return w, m, v
""",
    "spam": f"""\
def spam(w, g, m, v, lr, wd, step, c: scalar, beta1=0.9, beta2=0.999, eps=1e-6, threshold=5000,
         delta_t=500, warmup=150, accu=20):
    c = c + 1
    hit = 1 - minimum(abs(c - delta_t), 1)
    c = c * (1 - hit)
    m = m * (1 - hit)
    v = v * (1 - hit)
    on = maximum(sign(step - accu + 0.5), 0) * maximum(sign(c - accu + 0.5), 0)
    g = on * clip(g, sqrt(threshold * v)) + (1 - on) * g
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    before = minimum(maximum(sign(delta_t - step), 0) + 1 - minimum(delta_t, 1), 1)
    since = c + (warmup + 1) * before
    y = square(3.141592653589793 * minimum(since, warmup) / (warmup + 1))
{_COS}    scale = 1 - maximum(sign(warmup - since), 0) * 0.99 * (1 + cosx) / 2
    w = w - lr * sqrt(1 - beta2 ** step) / (1 - beta1 ** step) * scale * (m / (sqrt(v) + eps))
    w = w * (1 - lr * wd)
    return w, m, v, c
""",
    "adamp": """\
def adamp(w, g, m, v, lr, wd, step, is_vector, beta1=0.9, beta2=0.999, eps=1e-8, delta=0.1, wd_ratio=0.1):
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    u = m / (sqrt(v) / sqrt(1 - beta2 ** step) + eps)
    rw = sqrt(row_sum(w * w))
    cr = abs(row_sum(g * w)) / (maximum(sqrt(row_sum(g * g)), eps) * maximum(rw, eps))
    a = (1 - is_vector) * maximum(sign(delta / sqrt(cols(w)) - max_of(cr)), 0)
    cl = abs(mean(g * w)) * numel(w) / (maximum(norm(g), eps) * maximum(norm(w), eps))
    b = (1 - is_vector) * (1 - a) * maximum(sign(delta / sqrt(numel(w)) - cl), 0)
    pr = w / (rw + eps)
    pl = w / (norm(w) + eps)
    u = u - a * pr * row_sum(pr * u) - b * pl * (mean(pl * u) * numel(w))
    w = w * (1 - lr * wd * (1 - (a + b) * (1 - wd_ratio)))
    w = w - lr / (1 - beta1 ** step) * u
    return w, m, v
""",
    "scion": """\
def scion(w, g, buf, lr, wd, is_matrix, is_embedding, is_head, is_vector, momentum=0.1, scale=1.0):
    buf = interp(buf, g, momentum)
    spectral = orthogonalize(buf) * sqrt(rows(buf) / cols(buf))
    colnorm = buf / (sqrt(row_sum(buf * buf)) / sqrt(cols(buf)) + 1e-8)
    signed = sign(buf) / cols(buf)
    bias = buf / (rms(buf) + 1e-8)
    u = is_matrix * spectral + is_embedding * colnorm + is_head * signed + is_vector * bias
    w = w * (1 - lr * wd) - lr * scale * u
    return w, buf
""",
    "swan": """\
def swan(w, g, lr, wd, is_matrix, eps=1e-8):
    c = g - row_mean(g)
    gn = is_matrix * c / maximum(sqrt(row_mean(c * c)), 1e-30)
    u = matmul(gn, inv_root(matmul(transpose(gn), gn), 2, eps))
    u = u * (norm(gn) / maximum(norm(u), 1e-30))
    w = w * (1 - lr * wd) - lr * (u + (1 - is_matrix) * g)
    return w
""",
    "shampoo": """\
def shampoo(w, g, L: rowmat, R: colmat, PL: rowmat, PR: colmat, lr, wd, eps=1e-4, every=1):
    L = L + matmul(g, transpose(g))
    R = R + matmul(transpose(g), g)
    PL = refresh(every, inv_root(L, 4, eps), PL)
    PR = refresh(every, inv_root(R, 4, eps), PR)
    w = w * (1 - lr * wd) - lr * matmul(matmul(PL, g), PR)
    return w, L, R, PL, PR
""",
    "soap": """\
def soap(w, g, m, v, L: rowmat, R: colmat, QL: rowmat, QR: colmat, lr, wd, step, beta1=0.95, beta2=0.95,
         shampoo_beta=0.95, eps=1e-8, every=10):
    on = minimum(step - 1, 1)
    t = maximum(step - 1, 1)
    gp = matmul(matmul(transpose(QL), g), QR)
    m = on * interp(g, m, beta1)
    v = on * interp(gp * gp, v, beta2)
    mp = matmul(matmul(transpose(QL), m), QR)
    n = matmul(matmul(QL, mp / (sqrt(v) + eps)), transpose(QR))
    w = w - on * lr * sqrt(1 - beta2 ** t) / (1 - beta1 ** t) * n
    w = w * (1 - on * lr * wd)
    L = interp(matmul(g, transpose(g)), L, shampoo_beta)
    R = interp(matmul(transpose(g), g), R, shampoo_beta)
    QL = refresh(every, eigvecs(L), QL)
    QR = refresh(every, eigvecs(R), QR)
    return w, m, v, L, R, QL, QR
""",
    "conda": """\
def conda(w, g, m, v, U: rowmat, V: colmat, lr, wd, step, beta1=0.9, beta2=0.999, eps=1e-8, every=200):
    m = interp(g, m, beta1)
    U = refresh(every, eigvecs(matmul(m, transpose(m))), U)
    V = refresh(every, eigvecs(matmul(transpose(m), m)), V)
    tall = maximum(sign(rows(g) - cols(g)), 0)
    gp = (1 - tall) * matmul(transpose(U), g) + tall * matmul(g, V)
    mp = (1 - tall) * matmul(transpose(U), m) + tall * matmul(m, V)
    v = interp(gp * gp, v, beta2)
    n = mp / (sqrt(v) + eps)
    u = (1 - tall) * matmul(U, n) + tall * matmul(n, transpose(V))
    w = w - lr * sqrt(1 - beta2 ** step) / (1 - beta1 ** step) * u
    w = w * (1 - lr * wd)
    return w, m, v, U, V
""",
    "galore": """\
def galore(w, g, m, v, U: rowmat, V: colmat, lr, wd, step, is_matrix, beta1=0.9, beta2=0.999, eps=1e-6, rank=128,
           every=200, scale=0.25):
    tall = maximum(sign(rows(g) - cols(g) + 0.5), 0)
    U = refresh(every, keep_cols(eigvecs(matmul(g, transpose(g))), rank), U)
    V = refresh(every, keep_cols(eigvecs(matmul(transpose(g), g)), rank), V)
    gp = is_matrix * ((1 - tall) * matmul(transpose(U), g) + tall * matmul(g, V)) + (1 - is_matrix) * g
    m = interp(gp, m, beta1)
    v = interp(gp * gp, v, beta2)
    n = m / (sqrt(v) + eps)
    u = is_matrix * scale * ((1 - tall) * matmul(U, n) + tall * matmul(n, transpose(V))) + (1 - is_matrix) * n
    w = w - lr * sqrt(1 - beta2 ** step) / (1 - beta1 ** step) * u
    w = w * (1 - lr * wd)
    return w, m, v, U, V
""",
    "apollo_mini": """\
def apollo_mini(w, g, mr: row, vr: row, mc: col, vc: col, pc: col, pr: row, s: scalar, lr, wd, step, is_vector,
                beta1=0.9, beta2=0.999, eps=1e-6, scale=128, every=200, seed=0):
    tall = maximum(sign(rows(g) - cols(g) + 0.5), 0)
    pc = refresh(every, randn_like(pc, seed + step), pc)
    pr = refresh(every, randn_like(pr, seed + step), pr)
    gr = (1 - is_vector) * row_sum(g * pc) + is_vector * row_sum(g)
    gc = col_sum(g * pr)
    mr = interp(gr, mr, beta1)
    vr = interp(gr * gr, vr, beta2)
    mc = interp(gc, mc, beta1)
    vc = interp(gc * gc, vc, beta2)
    nr = mr / (sqrt(vr) + eps)
    nc = mc / (sqrt(vc) + eps)
    f = tall * norm(nr) / (norm(gr) + 1e-8) + (1 - tall) * norm(nc) / (norm(gc) + 1e-8)
    sg = f * g
    lim = 1 + minimum(step - 1, 1) * (maximum(norm(sg) / (s + 1e-8), 1.01) / 1.01 - 1)
    sg = sg / lim
    s = norm(sg)
    u = (1 - is_vector) * sqrt(scale) * sg + is_vector * nr
    w = w - lr * sqrt(1 - beta2 ** step) / (1 - beta1 ** step) * u
    w = w * (1 - lr * wd)
    return w, mr, vr, mc, vc, pc, pr, s
""",
}

_ADAM = {"beta1": "[0, 1)", "beta2": "[0, 1)", "eps": "[0, inf)"}

SHAPED_RANGES: dict[str, dict[str, str]] = {
    "adafactor": {"beta2_decay": "(-inf, 0]", "eps1": "[0, inf)", "eps2": "[0, inf)", "d": "(0, inf)"},
    "adam_mini": dict(_ADAM),
    "spam": {**_ADAM, "threshold": "(0, inf)", "delta_t": "[0, inf)", "warmup": "[0, inf)", "accu": "[0, inf)"},
    "adamp": {**_ADAM, "delta": "[0, inf)", "wd_ratio": "[0, 1]"},
    "scion": {"momentum": "[0, 1]", "scale": "[0, inf)"},
    "swan": {"eps": "(0, inf)"},
    "shampoo": {"eps": "(0, inf)", "every": "[1, inf)"},
    "soap": {**_ADAM, "shampoo_beta": "[0, 1)", "every": "[1, inf)"},
    "conda": {**_ADAM, "every": "[1, inf)"},
    "galore": {**_ADAM, "rank": "[0, inf)", "every": "[1, inf)", "scale": "[0, inf)"},
    "apollo_mini": {**_ADAM, "scale": "[0, inf)", "every": "[1, inf)"},
}

__all__ = ["SHAPED_RULES", "SHAPED_RANGES"]
