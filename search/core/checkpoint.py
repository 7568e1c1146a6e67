"""Checkpoints: the engine's state after each generation, and restoring a run from its store.

A part of :class:`search.core.Engine` (a mixin, like ``engine_operators`` and ``engine_llm``).

A resumed run re-plays its unfinished generation from the last checkpoint (same RNG state) and
reuses every evaluation that had finished (``engine.replay``), so it ends exactly like an
uninterrupted run.
"""
from __future__ import annotations

import math

from evaluators.base import EvalResult, Status

from .pipeline import PendingPlan
from .race import race_score
from .types import Individual, Stats, rng_state, set_rng_state


class Checkpointing:
    """Checkpoint and resume of the engine (a mixin of :class:`search.core.Engine`: it reads and
    restores the loop state ``Engine.__init__`` sets, the store, the strategy and the bandit)."""

    def save_checkpoint(self) -> None:
        """Write the engine's state (RNG, counters, population, strategy and operator state, the operator
        bandit, a pipelined run's next plan) after a generation."""
        llm = self.llm_state()
        state = {
            "rng": rng_state(self.rng), "used": self.used, "llm_calls": self.llm_calls,
            "llm_consecutive_errors": self.llm_consecutive_errors,
            "llm_disabled_reason": llm["llm_disabled_reason"],
            "wall": self.wall_elapsed(), "since_improvement": self.since_improvement,
            "best_key": list(self.best_key), "seeded": self.seeded,
            "population": [i.id for i in self.population], "strategy": self.strategy.state,
            "op_state": self.op_state, "stats": self.stats.to_dict(),
            "operators": self.bandit.state_dict(),
            "pending": self.pending.to_json() if self.pending is not None else None,
            # evaluations finished by now: a later row (a race block of an older candidate included)
            # belongs to the unfinished generation and is replayed, not known, on resume
            "evaluations": self.store.count("evaluations"),
        }
        if llm["llm_usage"] is not None:
            state["llm_usage"] = llm["llm_usage"]
        self.store.save_checkpoint(self.generation, self.next_id, state)


    def restore_run(self) -> None:
        """Rebuild the engine's state from its store: results before the last checkpoint become known,
        those after it are kept for replay, and the candidates after it are dropped."""
        ck = self.store.last_checkpoint()
        evals = self.store.evaluations()
        next_id = ck["next_id"] if ck else 0
        n_done = (ck or {}).get("state", {}).get("evaluations")   # absent in checkpoints before racing
        cands = [c for c in self.store.candidates() if c["id"] < next_id]
        by_key_rows: dict[tuple[str, str], dict] = {}
        for e in evals:
            if e.get("phase") == "validation":   # re-run by the finalize step (search.core.selection)
                continue
            r = EvalResult.model_validate_json(e["result"])
            if (e["seq"] < n_done) if n_done is not None else (e["candidate_id"] < next_id):
                self.known.setdefault(e["key"], {})[e["fidelity"]] = r
                by_key_rows[(e["key"], e["fidelity"])] = e
            else:
                self.replay[(e["key"], e["fidelity"])] = (r, float(e["cost"]), int(e["seq"]))
        for c in cands:
            if c["state"] != "ok":
                continue
            ind = Individual(id=c["id"], text=c["canonical"], kind=c["kind"], key=c["key"],
                             parents=tuple(c["parents"]), operator=c["operator"], generation=c["generation"],
                             meta=c["meta"])
            self.canon_seen.setdefault(ind.text, ind.id)
            for pid in ind.parents:
                if pid in self.individuals:
                    self.individuals[pid].children += 1
            for f in self.fidelities:
                if f in self.known.get(ind.key, {}):
                    self.apply_result(ind, self.known[ind.key][f])
            blocks = self.race_blocks(ind) if ind.level == len(self.fidelities) - 1 else []
            if len(blocks) > 1:   # raced: its top score is the mean over the blocks it had at the checkpoint
                ind.score = race_score(blocks)
        for key, f in by_key_rows:
            if f not in self.fidelities:                         # a race's seed block
                continue
            r = self.known[key][f]
            if r.status == Status.ok and math.isfinite(r.score):
                self.level_scores[self.fidelities.index(f)].append(float(r.score))
        self.store.truncate_after_checkpoint(next_id)
        self.next_id = next_id
        if ck:
            s = ck["state"]
            self.generation = ck["generation"]
            set_rng_state(self.rng, s["rng"])
            self.used, self.llm_calls = float(s["used"]), int(s["llm_calls"])
            self.llm_consecutive_errors = int(s["llm_consecutive_errors"])
            if s["llm_disabled_reason"]:
                self.llm_disabled_reason = s["llm_disabled_reason"]
            self.wall_before = float(s["wall"])
            self.since_improvement = float(s["since_improvement"])
            self.best_key = (int(s["best_key"][0]), float(s["best_key"][1]))
            self.seeded = bool(s["seeded"])
            self.population = [self.individuals[i] for i in s["population"] if i in self.individuals]
            self.strategy.state = s["strategy"]
            self.op_state = s["op_state"]
            self.stats = Stats(**s["stats"])
            self.bandit.load_state_dict(s.get("operators"))       # absent in runs started before the bandit
            self.pending = PendingPlan.from_json(s.get("pending"))
            self.resumed_llm_usage = s.get("llm_usage")
        self.store.set_meta(status="running")
        self.event("resumed", f"resumed at generation {self.generation} with {self.used:g} budget units used "
                                f"({len(self.replay)} finished evaluation(s) of the unfinished generation kept)")
