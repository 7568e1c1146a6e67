"""The runtime of shaped rules: primitives on the 2-D view, shaped state, refresh and roles.

A rule that uses shapes (``dsl.kinds.extensions``) runs on the ``m x n`` view of each
parameter: every value is a tensor ``(*batch, a, b)`` (a row ``(*batch, m, 1)``, a rowmat
``(*batch, m, m)``, a scalar from a reduction ``(*batch, 1, 1)``) or a number, so broadcasting is
torch's own. The reference interpreter (``dsl.interpret``) and the optimizers' per-parameter
step call these functions; exported modules carry this file's text below the marker.
"""
# EXPORTED: everything below this line is copied verbatim into exported modules.
import math

import torch

#: the most entries of a rowmat/colmat state (see dsl.primitives.MAX_MATRIX_STATE)
MAX_MATRIX_STATE = 1 << 26


def view_dims(shape):
    """(m, n) of a parameter shape: shape[0] x the rest; a 1-D parameter is n x 1, a 0-D one 1 x 1."""
    if len(shape) == 0:
        return 1, 1
    m = int(shape[0])
    n = 1
    for d in shape[1:]:
        n *= int(d)
    return m, n


def to_view(x, batch_dims=0):
    """The parameter-shaped tensor x as (*batch, m, n)."""
    m, n = view_dims(x.shape[batch_dims:])
    return x.reshape(*x.shape[:batch_dims], m, n)


def state_shape(kind, m, n):
    """The 2-D shape of a state of ``kind`` for an m x n parameter."""
    return {"tensor": (m, n), "row": (m, 1), "col": (1, n), "scalar": (1, 1), "rowmat": (m, m),
            "colmat": (n, n)}[kind]


def stored_shape(kind, param_shape, batch=()):
    """How a state is stored (what state_dict shows): a tensor state has the parameter's shape, a
    scalar state is 0-dim, the others are 2-D (row: m x 1, col: 1 x n, rowmat, colmat)."""
    if kind == "tensor":
        return tuple(batch) + tuple(param_shape)
    if kind == "scalar":
        return tuple(batch)
    return tuple(batch) + state_shape(kind, *view_dims(param_shape))


def new_state(kind, init, w, batch_dims=0):
    """A fresh state for parameter ``w``: zeros, a number, the identity (``eye``) or a copy of w."""
    batch, pshape = w.shape[:batch_dims], w.shape[batch_dims:]
    if init == "w":
        return w.detach().clone(memory_format=torch.preserve_format)
    shape = stored_shape(kind, pshape, batch)
    if kind in ("rowmat", "colmat"):
        size = shape[-1] * shape[-1]
        if size > MAX_MATRIX_STATE:
            raise ValueError(f"a {kind} state for a parameter of shape {tuple(pshape)} would hold {size} "
                             f"entries (more than {MAX_MATRIX_STATE}); give this parameter another rule "
                             "(a param group) or use a row/col (factored) state instead")
    if init == "eye":
        eye = torch.eye(shape[-1], dtype=w.dtype, device=w.device)
        return eye.expand(shape).clone()
    if kind == "tensor":
        out = torch.zeros_like(w, memory_format=torch.preserve_format)
    else:
        out = torch.zeros(shape, dtype=w.dtype, device=w.device)
    if init:
        out.fill_(float(init))
    return out


def state_to_view(x, kind, batch_dims=0):
    """A stored state as (*batch, a, b)."""
    if kind == "tensor":
        return to_view(x, batch_dims)
    if kind == "scalar":
        return x.reshape(*x.shape[:batch_dims], 1, 1)
    return x


def view_to_stored(v, kind, like, batch_dims=0):
    """A value of ``kind`` on the view back into the stored shape of ``like`` (a fresh tensor)."""
    shape = like.shape
    if kind == "tensor":
        m, n = view_dims(shape[batch_dims:])
        full = (*shape[:batch_dims], m, n)
    else:
        full = (*shape[:batch_dims], *state_shape(kind, *view_dims(shape[batch_dims:])))
    if not isinstance(v, torch.Tensor):
        v = torch.tensor(float(v), dtype=torch.float64)
    v = v.to(dtype=like.dtype, device=like.device)
    return torch.broadcast_to(v, full).reshape(shape).clone()


def role_flags(role, param_dim):
    """(is_matrix, is_embedding, is_head, is_vector) as 0/1 for a role (None: by dimension)."""
    if role is None:
        role = "matrix" if param_dim >= 2 else "vector"
    return tuple(1.0 if role == r else 0.0 for r in ("matrix", "embedding", "head", "vector"))


def due(step, k):
    """refresh's condition: (step - 1) mod k == 0, k rounded to an integer >= 1 (a nan or infinite k:
    only step 1)."""
    step, k = float(step), float(k)
    if not math.isfinite(k):
        return step == 1
    k = max(1, int(round(k)))
    return (int(round(step)) - 1) % k == 0


def rows(x):
    """The number of rows a of the a x b view (a Python number)."""
    return float(x.shape[-2])


def cols(x):
    """The number of columns b of the a x b view."""
    return float(x.shape[-1])


def numel(x):
    """a * b."""
    return float(x.shape[-2] * x.shape[-1])


def row_mean(x):
    """(1/b) sum_j x_ij: a x 1."""
    return x.mean(dim=-1, keepdim=True)


def row_sum(x):
    """sum_j x_ij: a x 1."""
    return x.sum(dim=-1, keepdim=True)


def col_mean(x):
    """(1/a) sum_i x_ij: 1 x b."""
    return x.mean(dim=-2, keepdim=True)


def col_sum(x):
    """sum_i x_ij: 1 x b."""
    return x.sum(dim=-2, keepdim=True)


def max_of(x):
    """The largest entry (1 x 1)."""
    return x.amax(dim=(-2, -1), keepdim=True)


def min_of(x):
    """The smallest entry (1 x 1)."""
    return x.amin(dim=(-2, -1), keepdim=True)


def matmul(a, b):
    """The matrix product of the 2-D views."""
    return a @ b


def transpose(x):
    """x^T of the 2-D view."""
    return x.mT.contiguous()


def _sym_eigh(M):
    """Eigenvalues (ascending) and eigenvectors of (M + M^T)/2, in float32 at least."""
    dt = M.dtype if M.dtype in (torch.float32, torch.float64) else torch.float32
    S = (M.to(dt) + M.to(dt).mT) / 2
    if S.device.type == "meta" or bool(torch.isfinite(S).all()):
        try:
            return torch.linalg.eigh(S)
        except torch.linalg.LinAlgError:  # no convergence: nan, as other numeric trouble in a rule
            pass
    nan = torch.full(S.shape[:-1], math.nan, dtype=dt, device=S.device)
    return nan, torch.full_like(S, math.nan)


def _per_matrix(v, like):
    """A scalar (number, 0-dim or (*batch, 1, 1) tensor) shaped to scale eigenvalues (*batch, a)."""
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device) if not isinstance(v, torch.Tensor) \
        else v.to(dtype=like.dtype, device=like.device)
    return v.reshape(*v.shape[:-2], 1) if v.dim() >= 2 else v


def inv_root(M, p, eps):
    """(S + eps I)^(-1/p) for S = (M + M^T)/2: Q diag((max(l, 0) + eps)^(-1/p)) Q^T."""
    lam, Q = _sym_eigh(M)
    lam = lam.clamp_min(0) + _per_matrix(eps, lam)
    scale = lam ** (-1.0 / _per_matrix(p, lam))
    return ((Q * scale.unsqueeze(-2)) @ Q.mT).to(M.dtype)


def eigvecs(M):
    """Eigenvectors of (M + M^T)/2 as columns, by descending eigenvalue."""
    _, Q = _sym_eigh(M)
    return Q.flip(-1).to(M.dtype)


def qr_q(M):
    """Q of M = Q R with R upper triangular, diag(R) >= 0 (the unique QR of a full-rank M)."""
    dt = M.dtype if M.dtype in (torch.float32, torch.float64) else torch.float32
    Q, R = torch.linalg.qr(M.to(dt))
    d = torch.diagonal(R, dim1=-2, dim2=-1)
    sign = torch.where(d < 0, -1.0, 1.0).to(dt)
    return (Q * sign.unsqueeze(-2)).to(M.dtype)


def keep_cols(M, r):
    """M with the columns after the first r zeroed: M diag(1[j < round(r)]). After ``eigvecs`` (descending
    eigenvalues) it is the top-r eigenbasis padded with zero columns, so a projection through it keeps
    the rank-r coordinates and zero rows for the rest (GaLore in m x m form)."""
    r = torch.as_tensor(r, dtype=torch.float64, device=M.device)
    if r.dim() >= 2:  # a per-copy count (*batch, 1, 1)
        r = r.reshape(*r.shape[:-2], 1, 1)
    cols_ = torch.arange(M.shape[-1], dtype=torch.float64, device=M.device)
    return M * (cols_ < torch.round(r)).to(M.dtype)


def _draw(seed, a, b):
    """a x b standard normal numbers, float64, from the CPU generator seeded with round(seed) mod 2^63."""
    seed = float(seed)
    if not math.isfinite(seed):
        return torch.full((a, b), math.nan, dtype=torch.float64)
    gen = torch.Generator().manual_seed(int(round(seed)) % (1 << 63))
    return torch.randn(a, b, generator=gen, dtype=torch.float64)


def randn_like(x, seed):
    """Standard normal entries in x's a x b shape (every batch copy gets the draw of its own seed), drawn
    in float64 on the CPU and then cast: the same numbers for the same seed on every device and dtype,
    so a rule's replay and fingerprint stay exact. A non-finite seed gives nan."""
    a, b = x.shape[-2], x.shape[-1]
    batch = x.shape[:-2]
    dt = x.dtype if x.dtype.is_floating_point else torch.float64
    if x.device.type == "meta":
        return torch.empty(x.shape, dtype=dt, device=x.device)
    s = torch.as_tensor(seed, dtype=torch.float64).reshape(-1)
    if s.numel() == 1:
        out = _draw(s[0], a, b).expand(*batch, a, b)
    else:
        out = torch.stack([_draw(v, a, b) for v in s]).reshape(*batch, a, b)
    return out.to(dtype=dt, device=x.device).contiguous()
