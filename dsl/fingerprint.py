"""``fingerprint(program)``: a hash of the function a rule computes, not of its text.

AutoML-Zero's functional equivalence check: run the rule with the reference
interpreter (float64) for a few steps on fixed pseudo-random inputs and hash
the rounded results. Two programs that differ only in names, in the order of
independent statements, or by exact identities compute bit-identical numbers,
so they share a fingerprint; different functions almost surely do not.

What is hashed, and why:

* Only the parameter's trajectory, as the updates ``w_{t+1} - w_t`` of steps
  1..3. The parameter is all an optimizer is observed through: state tensors
  enter only through their effect on later updates, so their names, their
  order in the signature, and dead states do not matter, while their role
  (how they feed the update) does.
* Two parameters, a 1-D and a 2-D one, so matrix primitives (identity on 1-D)
  are exercised; gradient entries span six orders of magnitude so that ``eps``
  and similar small constants change the result.
* ``lr`` and ``wd`` change from step to step (as under a schedule), so a rule
  with the learning rate written as a literal cannot collide with one using
  ``lr``. Hyperparameters take their defaults: names do not matter, defaults do.
* Rules that use the shaped language (``dsl.extensions``: row / column statistics, matrix state,
  roles, ...) get a third probe, a 6 x 5 parameter whose gradient rows are kept orthogonal to its
  rows at every step. Random gradients almost never trigger a branch on the angle between ``g``
  and ``w`` (AdamP's projection fires when every row's cosine is below ``0.1 / sqrt(n)``), so
  without it such a rule would share AdamW's fingerprint and its cached scores. Rules of the
  original language keep the fingerprints they always had.
* Rounding keeps ~9 significant digits (30 mantissa bits), so equivalent
  rewrites that differ in the last bits (reassociation) usually still match;
  nan, inf and the sign of zero are canonicalized.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import torch

from .interpret import run_rule
from .kinds import extensions
from .parser import parse
from .program import Program

STEPS = 3
LRS = (0.031, 0.017, 0.043)
WDS = (0.11, 0.07, 0.13)
SHAPES = ((7,), (5, 4))
ORTHO_SHAPE = (6, 5)
MANTISSA_BITS = 30
DIGEST_CHARS = 16
SEED = 20240607


@lru_cache(maxsize=1)
def _inputs() -> tuple[tuple[torch.Tensor, tuple[torch.Tensor, ...]], ...]:
    """Fixed (w0, (g_1, g_2, g_3)) per shape, float64."""
    gen = torch.Generator().manual_seed(SEED)
    out = []
    for shape in SHAPES:
        w0 = torch.randn(shape, generator=gen, dtype=torch.float64)
        gs = []
        for _ in range(STEPS):
            scale = 10.0 ** (torch.rand(shape, generator=gen, dtype=torch.float64) * 6 - 5)
            gs.append(torch.randn(shape, generator=gen, dtype=torch.float64) * scale)
        out.append((w0, tuple(gs)))
    return tuple(out)


def _canonical(x: np.ndarray) -> bytes:
    """Round to MANTISSA_BITS; one pattern each for nan, +inf, -inf and zero (either sign)."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    m, e = np.frexp(np.where(finite, x, 0.0))
    r = np.ldexp(np.round(np.ldexp(m, MANTISSA_BITS)), e - MANTISSA_BITS) + 0.0  # + 0.0 turns -0 into 0
    cls = np.where(finite, 0, np.where(np.isnan(x), 1, np.where(x > 0, 2, 3))).astype(np.int8)
    return r.astype("<f8").tobytes() + cls.tobytes()


@lru_cache(maxsize=1)
def _orthogonal_probe() -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """(w0, raw gradients) of the probe whose gradient rows are made orthogonal to w's rows."""
    gen = torch.Generator().manual_seed(SEED + 1)
    w0 = torch.randn(ORTHO_SHAPE, generator=gen, dtype=torch.float64)
    return w0, tuple(torch.randn(ORTHO_SHAPE, generator=gen, dtype=torch.float64) for _ in range(STEPS))


def _row_orthogonal(g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """g minus, row by row, its component along w's row."""
    return g - (g * w).sum(dim=1, keepdim=True) / (w * w).sum(dim=1, keepdim=True).clamp_min(1e-300) * w


def trajectory(program: Program) -> list[np.ndarray]:
    """The hashed numbers: per probe and step, the update w_{t+1} - w_t (float64)."""
    out = []
    for w0, gs in _inputs():
        w, state = w0, {}
        for t in range(STEPS):
            new_w, state = run_rule(program, w, gs[t], state, lr=LRS[t], wd=WDS[t], step=t + 1)
            out.append((new_w - w).numpy())
            w = new_w
    if extensions(program):
        w, raw = _orthogonal_probe()
        state = {}
        for t in range(STEPS):
            new_w, state = run_rule(program, w, _row_orthogonal(raw[t], w), state, lr=LRS[t], wd=WDS[t],
                                    step=t + 1)
            out.append((new_w - w).numpy())
            w = new_w
    return out


@lru_cache(maxsize=8192)
def _fingerprint(program: Program) -> str:
    h = hashlib.sha256()
    try:
        with np.errstate(all="ignore"):
            for d in trajectory(program):
                h.update(_canonical(d))
    except Exception as e:  # a rule the interpreter cannot run is one function: "fails like this"
        h.update(f"error:{type(e).__name__}".encode())
    return h.hexdigest()[:DIGEST_CHARS]


def fingerprint(program: Program | str) -> str:
    """Functional hash (16 hex chars) of a program or program text (text is parsed first)."""
    if isinstance(program, str):
        program = parse(program)
    return _fingerprint(program)


__all__ = ["fingerprint", "trajectory"]
