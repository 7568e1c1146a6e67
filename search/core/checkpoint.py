"""Checkpoints: the engine's state after each generation, and restoring a run from its store.

A resumed run re-plays its unfinished generation from the last checkpoint (same RNG state) and
reuses every evaluation that had finished (``engine.replay``), so it ends exactly like an
uninterrupted run.
"""
from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from evaluators.base import EvalResult, Status

from .pipeline import PendingPlan
from .types import Individual, Stats

if TYPE_CHECKING:
    from .engine import Engine


def rng_state(rng: random.Random) -> list:
    v, internal, gauss = rng.getstate()
    return [v, list(internal), gauss]


def set_rng_state(rng: random.Random, s: list) -> None:
    rng.setstate((s[0], tuple(s[1]), s[2]))


def save_checkpoint(engine: "Engine") -> None:
    """Write the engine's state (RNG, counters, population, strategy and operator state, the operator
    bandit, a pipelined run's next plan) after a generation."""
    llm = engine.llm_state()
    state = {
        "rng": rng_state(engine.rng), "used": engine.used, "llm_calls": engine.llm_calls,
        "llm_consecutive_errors": engine.llm_consecutive_errors,
        "llm_disabled_reason": llm["llm_disabled_reason"],
        "wall": engine.wall_elapsed(), "since_improvement": engine.since_improvement,
        "best_key": list(engine.best_key), "seeded": engine.seeded,
        "population": [i.id for i in engine.population], "strategy": engine.strategy.state,
        "op_state": engine.op_state, "stats": engine.stats.to_dict(),
        "operators": engine.bandit.state_dict(),
        "pending": engine.pending.to_json() if engine.pending is not None else None,
    }
    if llm["llm_usage"] is not None:
        state["llm_usage"] = llm["llm_usage"]
    engine.store.save_checkpoint(engine.generation, engine.next_id, state)


def restore_run(engine: "Engine") -> None:
    """Rebuild the engine's state from its store: results before the last checkpoint become known,
    those after it are kept for replay, and the candidates after it are dropped."""
    ck = engine.store.last_checkpoint()
    evals = engine.store.evaluations()
    next_id = ck["next_id"] if ck else 0
    cands = [c for c in engine.store.candidates() if c["id"] < next_id]
    by_key_rows: dict[tuple[str, str], dict] = {}
    for e in evals:
        if e.get("phase") == "validation":   # re-run by the finalize step (search.core.selection)
            continue
        r = EvalResult.model_validate_json(e["result"])
        if e["candidate_id"] < next_id:
            engine.known.setdefault(e["key"], {})[e["fidelity"]] = r
            by_key_rows[(e["key"], e["fidelity"])] = e
        else:
            engine.replay[(e["key"], e["fidelity"])] = (r, float(e["cost"]), int(e["seq"]))
    for c in cands:
        if c["state"] != "ok":
            continue
        ind = Individual(id=c["id"], text=c["canonical"], kind=c["kind"], key=c["key"],
                         parents=tuple(c["parents"]), operator=c["operator"], generation=c["generation"],
                         meta=c["meta"])
        engine.canon_seen.setdefault(ind.text, ind.id)
        for pid in ind.parents:
            if pid in engine.individuals:
                engine.individuals[pid].children += 1
        for f in engine.fidelities:
            if f in engine.known.get(ind.key, {}):
                engine.apply_result(ind, engine.known[ind.key][f])
    for key, f in by_key_rows:
        r = engine.known[key][f]
        if r.status == Status.ok and math.isfinite(r.score):
            engine.level_scores[engine.fidelities.index(f)].append(float(r.score))
    engine.store.truncate_after_checkpoint(next_id)
    engine.next_id = next_id
    if ck:
        s = ck["state"]
        engine.generation = ck["generation"]
        set_rng_state(engine.rng, s["rng"])
        engine.used, engine.llm_calls = float(s["used"]), int(s["llm_calls"])
        engine.llm_consecutive_errors = int(s["llm_consecutive_errors"])
        if s["llm_disabled_reason"]:
            engine.llm_disabled_reason = s["llm_disabled_reason"]
        engine.wall_before = float(s["wall"])
        engine.since_improvement = float(s["since_improvement"])
        engine.best_key = (int(s["best_key"][0]), float(s["best_key"][1]))
        engine.seeded = bool(s["seeded"])
        engine.population = [engine.individuals[i] for i in s["population"] if i in engine.individuals]
        engine.strategy.state = s["strategy"]
        engine.op_state = s["op_state"]
        engine.stats = Stats(**s["stats"])
        engine.bandit.load_state_dict(s.get("operators"))       # absent in runs started before the bandit
        engine.pending = PendingPlan.from_json(s.get("pending"))
        engine.resumed_llm_usage = s.get("llm_usage")
    engine.store.set_meta(status="running")
    engine.event("resumed", f"resumed at generation {engine.generation} with {engine.used:g} budget units used "
                            f"({len(engine.replay)} finished evaluation(s) of the unfinished generation kept)")
