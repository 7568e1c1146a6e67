"""Replacing the incumbent prompt only on evidence: paired intervals on dev and a race for more examples.

Two prompts scored on the same dev examples give paired per-example scores ``a_i``, ``b_i`` (1/0 for
a right/wrong answer, or the metric's fraction); the gain is ``mean(a_i - b_i)`` and its interval the
paired bootstrap: resample the examples (the same resample for both prompts), take the mean
difference, and read the ``alpha`` and ``1 - alpha`` quantiles of ``n_boot`` replicates. Pairing
removes the examples' own difficulty from the noise, which on a 20-example dev split is most of it.

The decision (:func:`race_to_replace`), for the finalists (the top prompts by the search's ranking)
against the incumbent (the initial prompt), best first:

1. on the screening minibatch (a subset of dev both prompts were scored on), a finalist whose
   interval lies below 0 is dropped: it gets no more examples;
2. the others get the whole dev split (scored now when the search never promoted them: more
   examples for the promising prompts only), and a finalist is adopted only when its paired
   interval on dev lies above 0 (its lower bound ``> 0``); the first adopted, by dev gain, wins.

Nothing adopted: the incumbent stays. ``[prompt] select_alpha`` is ``alpha`` (default 0.1: a
one-sided 90% bound); None or 1.0 keep the plain best-by-dev choice.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from evaluators.base import Candidate, Status
from search.core import EngineView, Individual


@dataclass
class PairedInterval:
    """The mean paired gain of a over b and its bootstrap interval (``lo``, ``hi``: the ``alpha`` and
    ``1 - alpha`` quantiles), over ``n`` shared examples."""
    gain: float
    lo: float
    hi: float
    n: int
    alpha: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def paired_interval(a: Sequence[float], b: Sequence[float], alpha: float = 0.1, n_boot: int = 4000,
                    seed: int = 0) -> PairedInterval:
    """Paired bootstrap of ``mean(a - b)`` over examples (module docstring); deterministic for ``seed``."""
    if len(a) != len(b) or not len(a):
        raise ValueError(f"paired scores need the same examples for both prompts, got {len(a)} and {len(b)}")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return PairedInterval(gain=float(d.mean()), lo=float(lo), hi=float(hi), n=int(d.size), alpha=alpha)


def per_example(ind: Individual, fidelity: str) -> list[float] | None:
    """``ind``'s per-example scores at ``fidelity`` (None when it was not scored there)."""
    r = ind.results.get(fidelity)
    tr = next(iter(r.tasks.values()), None) if r is not None and r.status == Status.ok else None
    pe = tr.extra.get("per_example") if tr is not None else None
    return [float(x) for x in pe] if pe else None


def _ensure_dev(engine: EngineView, inds: list[Individual]) -> None:
    """Score on dev those of ``inds`` the search never promoted there (recorded like a finalist's test
    scores: outside the search budget, in the candidate's ``meta.dev_race``)."""
    todo = [i for i in inds if "dev" not in i.results]
    if not todo:
        return
    results = engine.evaluator.evaluate([Candidate(kind="prompt", text=i.text) for i in todo], "dev")
    for ind, r in zip(todo, results):
        ind.results["dev"] = r
        ind.meta["dev_race"] = {"dev": r.score if r.status == Status.ok else None}
        engine.store.update_candidate_meta(ind.id, dict(ind.meta))


def race_to_replace(engine: EngineView, finalists: list[Individual], incumbent: Individual,
                    alpha: float) -> dict[str, Any]:
    """The decision of the module docstring; returns what the run stores under ``prompt_final.selection``:
    ``adopted`` (the id, or None: the incumbent stays), ``kept_initial``, ``why`` and per finalist its
    minibatch and dev intervals and where it stopped."""
    rows: list[dict[str, Any]] = []
    inc_mb = per_example(incumbent, "minibatch")
    promising = []
    for f in finalists:
        if f.id == incumbent.id:
            continue
        row: dict[str, Any] = {"id": f.id, "minibatch": None, "dev": None, "stopped": None}
        rows.append(row)
        mb = per_example(f, "minibatch")
        if mb is not None and inc_mb is not None and len(mb) == len(inc_mb):
            iv = paired_interval(mb, inc_mb, alpha)
            row["minibatch"] = iv.to_json()
            if iv.hi < 0:
                row["stopped"] = "minibatch"
                continue
        promising.append((f, row))
    _ensure_dev(engine, [f for f, _ in promising] + [incumbent])
    inc_dev = per_example(incumbent, "dev")
    adopted: list[tuple[float, int, Individual]] = []
    for f, row in promising:
        dev = per_example(f, "dev")
        if dev is None or inc_dev is None or len(dev) != len(inc_dev):
            row["stopped"] = "no paired dev scores"
            continue
        iv = paired_interval(dev, inc_dev, alpha)
        row["dev"] = iv.to_json()
        row["stopped"] = "adoptable" if iv.lo > 0 else "dev"
        if iv.lo > 0:
            adopted.append((iv.gain, -f.id, f))
    best = max(adopted)[2] if adopted else None
    if best is not None:
        iv = next(r["dev"] for r in rows if r["id"] == best.id)
        why = (f"#{best.id} beat the initial prompt on the paired dev examples by {iv['gain']:+.3f} "
               f"(interval [{iv['lo']:+.3f}, {iv['hi']:+.3f}] at {1 - 2 * alpha:.0%}, above 0): adopted")
    else:
        why = (f"no finalist's paired dev interval vs the initial prompt lies above 0 (paired bootstrap "
               f"interval at {1 - 2 * alpha:.0%}): kept the initial prompt")
    return {"test": "paired interval", "alpha": alpha, "adopted": best.id if best else None,
            "kept_initial": best is None, "why": why, "finalists": rows}


__all__ = ["PairedInterval", "paired_interval", "per_example", "race_to_replace"]
