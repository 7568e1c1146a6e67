"""Watching a bank campaign for meta-overfitting: the current best's validation score per generation.

The search's fitness is measured on fresh tasks from the search families; a rule can still drift
towards what those families reward and away from what transfers. So every ``[bank] track_every``
generations the current best is scored on the fixed validation bank (at ``track_fidelity``, the
cheapest by default; results are cached, so an unchanged best costs nothing) and the point
``{generation, id, search_score, validation_score}`` is appended to the run's ``meta.bank_track``.

Meta-overfitting is flagged when, over the last ``overfit_window`` points, the least-squares line of
the search score against the generation rises by more than :data:`MIN_CHANGE` across the window
while that of the validation score falls by more than it (a smaller change, a best that did not
change at all included, is noise, not a trend); a ``meta_overfitting`` event (a warning in the
run's log and live view) is written when the flag turns on.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from evaluators import WORST_SCORE, Candidate, Status
from search.core import EngineView


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys on xs (0 for fewer than two points or constant xs)."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(x) < 2 or float(np.ptp(x)) == 0.0:
        return 0.0
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


#: the smallest change across the tracking window (in score units, ~1% of loss) that counts as a trend
MIN_CHANGE = 0.01


def overfitting(track: Sequence[dict[str, Any]], window: int,
                min_change: float = MIN_CHANGE) -> tuple[bool, float, float]:
    """(flag, search slope, validation slope) over the last ``window`` points with both scores."""
    pts = [p for p in track if p.get("validation_score") is not None
           and math.isfinite(p["validation_score"]) and math.isfinite(p["search_score"])][-window:]
    if len(pts) < window:
        return False, 0.0, 0.0
    gens = [p["generation"] for p in pts]
    s = slope(gens, [p["search_score"] for p in pts])
    v = slope(gens, [p["validation_score"] for p in pts])
    span = float(max(gens) - min(gens))
    return (s * span > min_change and v * span < -min_change), s, v


def track_validation(engine: EngineView, every: int, fidelity: str | None, window: int) -> dict | None:
    """Score the current best on the validation bank when this generation is due; record and warn."""
    g = engine.generation
    if every <= 0 or engine.validator is None or g % every:
        return None
    top = engine.ctx.top(1)
    if not top or top[0].score <= WORST_SCORE:
        return None
    best = top[0]
    fid = fidelity or engine.fidelities[0]
    try:
        r = engine.validator.evaluate([Candidate(kind=engine.campaign.kind, text=best.text)], fid)[0]
    except Exception as e:  # noqa: BLE001 - an evaluator must not raise; tracking is best effort
        engine.event("evaluator_error", f"validation tracking: {type(e).__name__}: {e}")
        return None
    val = float(r.score) if r.status == Status.ok and math.isfinite(r.score) else None
    point = {"generation": g, "id": best.id, "search_score": float(best.score), "validation_score": val,
             "fidelity": fid}
    track = [p for p in (engine.store.get_meta("bank_track") or []) if p["generation"] < g]
    was = bool(track and track[-1].get("overfitting"))
    flag, s, v = overfitting(track + [point], window)
    point["overfitting"] = flag
    track.append(point)
    engine.store.set_meta(bank_track=track)
    engine.event("bank_validation", f"generation {g}: best #{best.id} search {best.score:+.4f}, validation "
                 f"{'-' if val is None else f'{val:+.4f}'} at {fid}", **point)
    if flag and not was:
        engine.event("meta_overfitting",
                     f"warning: over the last {window} tracked generations the search score rose (slope "
                     f"{s:+.4f}/generation) while the validation score fell ({v:+.4f}/generation): the search "
                     "may be fitting its task families, not optimization in general", search_slope=s,
                     validation_slope=v, generation=g)
    return point


def bank_lines(view) -> list[str]:
    """``optforge show`` lines of a bank run (a ``RunView``): its banks, the validation track and any
    meta-overfitting warning; none for a run without a bank."""
    bank = view.store.get_meta("bank")
    if not bank:
        return []
    out = [f"task bank: search families {', '.join(bank['search_families']) or '-'} ({bank['per_generation']} "
           f"fresh tasks per generation, {bank.get('aggregate', 'mean')} over tasks); validation bank "
           f"{len(bank['validation'])} tasks ({', '.join(bank['validation_families'])}); test bank "
           f"{len(bank['test'])} tasks ({', '.join(bank['test_families']) or '-'})"]
    track = view.store.get_meta("bank_track") or []
    if track:
        pts = ", ".join(f"g{p['generation']} {p['search_score']:+.3f}/"
                        f"{'-' if p['validation_score'] is None else format(p['validation_score'], '+.3f')}"
                        for p in track[-6:])
        out.append(f"best on search / validation bank by generation: {pts}")
        if any(p.get("overfitting") for p in track):
            out.append("warning: meta-overfitting seen (search score rising while validation fell); "
                       "see the run's meta_overfitting events")
    return out


__all__ = ["MIN_CHANGE", "slope", "overfitting", "track_validation", "bank_lines"]
