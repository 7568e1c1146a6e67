"""Racing at the funnel's top fidelity (irace / SMAC intensification): more seeds for contenders only.

A search score on a few training seeds is noisy, and the best of many noisy scores is biased
upwards (the winner's curse). Evaluating every promoted candidate on more seeds would fix that
at a multiple of the cost; racing spends it only where it matters. With ``[funnel] mode = "race"``
each candidate promoted to the top fidelity, once scored on the evaluator's own seeds (block 0),
races the incumbent (the best individual there) on further blocks of seeds (``[funnel.race]
blocks`` in all; the kind builds each block's evaluator, ``KindPlugin.block_evaluator``):

    alive = the contenders and the incumbent
    for b = 1 .. blocks - 1:
        leader = the best of the alive on their first b blocks
        drop every other one significantly worse than the leader on those blocks
        evaluate the alive on block b (each individual once per block, whatever race asks again)

"Significantly worse": the paired differences ``d_i = r_i(contender) - r_i(incumbent)`` over the
shared (block, task, seed) triples, ``r`` a per-seed log ratio against the baseline (same seeds,
same data order: ``evaluators.per_seed_log_ratios``, clipped as the evaluator clips), have a
one-sided paired t-test p-value below ``alpha``: ``t = mean(d) / (sd(d) / sqrt(n))``, p = P(T_{n-1}
<= t). Kinds whose results carry no per-seed metrics pair task scores instead. A candidate's top
score is then the mean of its block scores (:func:`race_score`), so the ranking compares
candidates on more seeds exactly where it is decided. Pure functions; the engine part is
``search.core.funnel``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats as sps

from evaluators import StatsError, per_seed_log_ratios
from evaluators.base import WORST_SCORE, EvalResult, Status

T = TypeVar("T")

#: a promotion mode of ``[funnel] mode``: the top-quantile rule alone, or that plus racing
MODES = ("quantile", "race")


class RaceConfig(BaseModel):
    """``[funnel.race]``: how contenders race the incumbent at the top fidelity (module docstring)."""
    model_config = ConfigDict(extra="forbid")

    blocks: int = Field(3, ge=1, le=16)         # seed blocks a contender can get (block 0 included)
    alpha: float = Field(0.1, gt=0, lt=1)       # level of the one-sided paired t-test that drops one


def paired_values(r: EvalResult, clip: float | None) -> dict[tuple[str, int], float]:
    """(task, seed index) -> per-seed log ratio of an ok result; the task score at seed index -1 when
    the result has no paired seeds (kinds without per-seed metrics)."""
    out: dict[tuple[str, int], float] = {}
    for name, tr in r.tasks.items():
        if tr.status != Status.ok:
            continue
        try:
            for i, x in enumerate(per_seed_log_ratios(tr, clip)):
                out[(name, i)] = float(x)
        except StatsError:
            out[(name, -1)] = float(tr.score)
    return out


def paired_diffs(a: Sequence[EvalResult], b: Sequence[EvalResult], clip: float | None) -> np.ndarray:
    """Differences a - b over the (block, task, seed) triples both have, blocks paired by position."""
    out = []
    for ra, rb in zip(a, b):
        pa, pb = paired_values(ra, clip), paired_values(rb, clip)
        out += [pa[k] - pb[k] for k in pa.keys() & pb.keys()]
    return np.asarray(sorted(out), dtype=float)


def significantly_worse(diffs: np.ndarray, alpha: float) -> bool:
    """One-sided paired t-test that the mean difference is below 0, at level ``alpha``."""
    d = diffs[np.isfinite(diffs)]
    if d.size < 2 or float(d.mean()) >= 0:
        return False
    if float(d.std()) <= 1e-12 * max(1.0, abs(float(d.mean()))):   # every pair worse by the same amount
        return True
    return bool(sps.ttest_1samp(d, 0.0, alternative="less").pvalue < alpha)


def ok(r: EvalResult | None) -> bool:
    return r is not None and r.status == Status.ok and math.isfinite(r.score)


def race_score(blocks: Sequence[EvalResult]) -> float:
    """A candidate's score over its seed blocks: the mean of the block scores (the worst score when one
    failed; every block has the same tasks and as many seeds)."""
    if not blocks or not all(ok(r) for r in blocks):
        return WORST_SCORE
    return float(sum(r.score for r in blocks) / len(blocks))


@dataclass
class RaceOutcome:
    """What one race did: the contenders dropped (-> the block count they had), the incumbent at the
    end, and the block evaluations asked for (one per individual and block; cached ones included)."""
    dropped: dict[int, int] = field(default_factory=dict)
    incumbent: object | None = None
    requested: int = 0


def race(contenders: Sequence[T], incumbent: T | None, blocks_of: Callable[[T], list[EvalResult]],
         evaluate: Callable[[list[T], int], None], cfg: RaceConfig, clip: float | None,
         ident: Callable[[T], int] = id) -> RaceOutcome:
    """Race ``contenders`` (each with block 0 already) against ``incumbent`` (module docstring).

    ``blocks_of(x)``: x's results, block 0 first; ``evaluate(xs, b)`` adds block ``b`` to each of
    ``xs`` (an individual's block ``b`` is asked for once). Deterministic for deterministic scores."""
    out = RaceOutcome(incumbent=incumbent)
    alive = [c for c in contenders if c is not incumbent and blocks_of(c) and ok(blocks_of(c)[0])]
    if incumbent is not None and blocks_of(incumbent) and ok(blocks_of(incumbent)[0]):
        alive.append(incumbent)
    for b in range(1, cfg.blocks):
        if len(alive) < 2:
            break
        inc = max(alive, key=lambda x: (race_score(blocks_of(x)[:b]), -ident(x)))
        out.incumbent = inc
        survivors = [inc]
        for c in alive:
            if c is inc:
                continue
            if significantly_worse(paired_diffs(blocks_of(c)[:b], blocks_of(inc)[:b], clip), cfg.alpha):
                out.dropped[ident(c)] = b
            else:
                survivors.append(c)
        alive = survivors
        if len(alive) < 2:
            break
        need = [x for x in alive if len(blocks_of(x)) == b]
        out.requested += len(need)
        if need:
            evaluate(need, b)
        alive = [x for x in alive if len(blocks_of(x)) > b and ok(blocks_of(x)[b])]
    if alive:
        out.incumbent = max(alive, key=lambda x: (race_score(blocks_of(x)), -ident(x)))
    return out


Mode = Literal["quantile", "race"]

__all__ = ["MODES", "Mode", "RaceConfig", "RaceOutcome", "paired_values", "paired_diffs", "significantly_worse",
           "race_score", "race"]
