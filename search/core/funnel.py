"""The engine's funnel: evaluating candidates at each fidelity and promoting the best.

A part of :class:`search.core.Engine` (a mixin, like ``checkpoint``, ``engine_operators`` and
``engine_llm``). Children are screened at the cheapest fidelity; those in the top
``funnel.promote_fraction`` of every ok score seen at a level go on to the next one; with ``[funnel]
mode = "race"`` (the default) those reaching the top fidelity then race the incumbent on more seed
blocks (``search.core.race``; stored as fidelity ``<top>@<block>``, phase ``race``). Each key is
trained at most once per fidelity (a known result, a twin in the batch, or a result replayed after
a kill is reused at no cost), and each finished evaluation is written to the store the moment the
evaluator reports it, one transaction per result (the engine docstring's "Durability").
"""
from __future__ import annotations

import math
from collections.abc import Callable

from evaluators.base import Candidate, EvalResult, Evaluator, Status, accepts_on_result

from .race import race, race_score
from .types import Individual, Proposal


class RaceError(ValueError):
    """A race the campaign's kind cannot run (it has no evaluators for more seeds)."""


def block_label(fidelity: str, block: int) -> str:
    """The stored fidelity of seed block ``block`` (> 0) of a race at ``fidelity``."""
    return f"{fidelity}@{block}"


class Funnel:
    """Evaluation of the engine (uses ``campaign``, ``evaluator``, ``fidelities``, ``known``,
    ``replay``, ``store``, ``stats``, ``level_scores``, ``eval_charge``, ``progress``, the budget
    counters and the recording helpers of Engine)."""

    def score_variant(self, text: str, key: str, parent: Individual, fidelity: str, step: str) -> Individual:
        """Record ``text`` (canonical, with its evaluator key) as a simplification try of ``parent``
        and evaluate it at ``fidelity`` outside the search budget (phase ``simplify``); a known
        result is reused. Used by the empirical simplification of winners (search.core.simplify)."""
        ind = self._make_individual(text, key, Proposal(text, "simplify", (parent.id,), meta={"step": step}),
                                    state="simplify")
        self._evaluate([ind], fidelity, phase="simplify")
        return ind

    def _evaluate(self, inds: list[Individual], fidelity: str, phase: str = "search",
                  block: int = 0) -> list[Individual]:
        """Evaluate at one fidelity (cache, replay, or the evaluator); returns those with a result.

        Each key is trained at most once per fidelity: a child whose key already has a result
        (an earlier candidate, or a twin in this batch) reuses it at no cost. Each new result is
        written to the store as soon as the evaluator reports it (see "Durability" above); the
        engine's counters are updated afterwards, in the order of ``inds``. ``block > 0``: seed block
        ``block`` of a race (search.core.race), stored as fidelity ``<fidelity>@<block>``, phase
        ``race``, at the fidelity's cost; it leaves the individuals' own results alone.
        """
        lvl = self.fidelities.index(fidelity)
        search = phase in ("search", "race")   # the simplify phase has its own cap and costs no search units
        cost = self.campaign.fidelity_cost(fidelity) if search else 0.0
        priced = fidelity                      # what an evaluation here costs (a race block: its fidelity's)
        if block:
            fidelity = block_label(fidelity, block)
        done: list[Individual] = []
        waiting: list[Individual] = []     # keys not known yet, in order
        for ind in inds:
            if fidelity in self.known.get(ind.key, {}):
                if not block:
                    self.apply_result(ind, self.known[ind.key][fidelity])
                self.stats.reused += 1
                done.append(ind)
            else:
                waiting.append(ind)
        unique: dict[str, Individual] = {}
        for ind in waiting:
            unique.setdefault(ind.key, ind)
        firsts = list(unique.values())
        if search:
            firsts = firsts[: self._affordable(priced, len(unique))]
        got: dict[int, tuple[EvalResult, float]] = {}   # individual id -> (result, cost)
        fresh = []
        for ind in firsts:
            rep = self.replay.pop((ind.key, fidelity), None)
            if rep is not None:                        # finished before a kill: reuse, count as then
                r, c, _seq = rep
                got[ind.id] = (r, c)
            else:
                fresh.append(ind)
        if fresh:
            written: dict[int, EvalResult] = {}        # index in fresh -> result in the store

            def on_result(j: int, r: EvalResult) -> None:
                """Persist one finished evaluation at once (its own transaction)."""
                if j in written or not 0 <= j < len(fresh):
                    return
                r = r if r.fidelity == fidelity else r.model_copy(update={"fidelity": fidelity})
                try:
                    self.store.add_result(fresh[j].id, fresh[j].key, r, fidelity=fidelity, cost=cost, phase=phase)
                except Exception:  # noqa: BLE001 - retried below once the batch is back (raises then)
                    return
                written[j] = r

            results = self._run_evaluator(fresh, fidelity, on_result, block)
            for j, (ind, r) in enumerate(zip(fresh, results)):
                if j in written:
                    r = written[j]                     # what the store holds
                else:
                    self.store.add_result(ind.id, ind.key, r, fidelity=fidelity, cost=cost, phase=phase)
                got[ind.id] = (r, cost)
        fresh_ids = {i.id for i in fresh}
        for ind in firsts:                             # in the batch's order, however results arrived
            r, c = got[ind.id]
            if search:                                 # what this child cost (the operator bandit's reward)
                charge = self.eval_charge.setdefault(ind.id, [0.0, 0.0])
                charge[0] += float(r.seconds)
                charge[1] += c
            self.used += c
            self.since_improvement += c
            self._store_known(ind, r, lvl, search)
            done.append(ind)
            if self.progress is not None and ind.id in fresh_ids:
                self.progress.update(self)
        chosen = {i.id for i in firsts}
        for ind in waiting:                            # twins of a key evaluated just now
            if ind.id not in chosen and fidelity in self.known.get(ind.key, {}):
                if not block:
                    self.apply_result(ind, self.known[ind.key][fidelity])
                self.stats.reused += 1
                done.append(ind)
        done.sort(key=lambda i: i.id)
        return done

    def _store_known(self, ind: Individual, r: EvalResult, lvl: int, search: bool = True) -> None:
        self.known.setdefault(ind.key, {})[r.fidelity] = r
        if r.fidelity not in self.fidelities:        # a race block: the race reads it from known
            return
        self.apply_result(ind, r)
        if search:
            if r.status == Status.ok and math.isfinite(r.score):
                self.level_scores[lvl].append(float(r.score))
            self._observe(ind)

    def _run_evaluator(self, inds: list[Individual], fidelity: str,
                       on_result: Callable[[int, EvalResult], None] | None = None,
                       block: int = 0) -> list[EvalResult]:
        """The evaluator's results for ``inds``; ``on_result(index, result)`` as each one is final
        (evaluators without the streaming argument report nothing early: the caller writes after).
        ``block > 0``: the kind's evaluator of that seed block, at the fidelity ``fidelity`` names."""
        cands = [Candidate(kind=self.campaign.kind, text=i.text, meta={"id": i.id}) for i in inds]
        ev, run_fid = self.evaluator, fidelity
        try:
            if block:
                ev, run_fid = self._block_evaluator(block), fidelity.rsplit("@", 1)[0]
            if on_result is not None and accepts_on_result(ev):
                results = ev.evaluate(cands, run_fid, on_result=on_result)
            else:
                results = ev.evaluate(cands, run_fid)
            if len(results) != len(cands):
                raise RuntimeError(f"evaluator returned {len(results)} results for {len(cands)} candidates")
        except Exception as e:  # an evaluator must not raise for a bad candidate; keep going anyway
            self.event("evaluator_error", f"{type(e).__name__}: {e}")
            results = [EvalResult(key=i.key, fidelity=fidelity, status=Status.error,
                                  reason=f"evaluator raised {type(e).__name__}: {e}") for i in inds]
        return [r if r.fidelity == fidelity else r.model_copy(update={"fidelity": fidelity}) for r in results]

    def _promote(self, inds: list[Individual], lvl: int) -> list[Individual]:
        """Those in the top promote_fraction of all ok scores seen at level ``lvl``."""
        scores = sorted(self.level_scores[lvl])
        if not scores:
            return []
        frac = self.campaign.funnel.promote_fraction
        k = max(1, int(math.ceil(frac * len(scores))))
        threshold = scores[-k]
        return [i for i in inds if self.fidelities[lvl] in i.results
                and i.results[self.fidelities[lvl]].status == Status.ok
                and i.results[self.fidelities[lvl]].score >= threshold]

    def _funnel(self, children: list[Individual], *, promote_all: bool = False) -> list[Individual]:
        """Screen at the cheapest fidelity, promote the best to the next ones; with ``[funnel] mode =
        "race"`` those that reach the top fidelity then race the incumbent. Returns the evaluated."""
        top = self.ctx.top(1)
        incumbent = top[0] if top and top[0].level == len(self.fidelities) - 1 else None
        evaluated = self._evaluate(children, self.fidelities[0])
        current = evaluated
        reached = len(self.fidelities) == 1
        for lvl in range(1, len(self.fidelities)):
            if promote_all:
                up = [i for i in current if i.results[self.fidelities[lvl - 1]].status == Status.ok]
            else:
                up = self._promote(current, lvl - 1)
            if not up:
                break
            current = self._evaluate(up, self.fidelities[lvl])
            reached = lvl == len(self.fidelities) - 1
        if reached and self.campaign.funnel.mode == "race" and self.campaign.funnel.race.blocks > 1:
            self._race(current, incumbent)
        return evaluated

    # -- racing (search.core.race) ---------------------------------------------------------
    def _block_evaluator(self, block: int) -> Evaluator:
        """The kind's evaluator of seed block ``block`` (made once); RaceError when the kind has none."""
        cache = self.__dict__.setdefault("_block_evaluators", {})
        if block not in cache:
            ev = self.kind.block_evaluator(self.evaluator, block)
            if ev is None:
                raise RaceError(f"no racing: the {self.campaign.kind!r} kind cannot evaluate on other seeds "
                                "(it has no KindPlugin.block_evaluator), so [funnel] mode = \"race\" promotes "
                                "by the quantile rule alone")
            cache[block] = ev
        return cache[block]

    def race_blocks(self, ind: Individual) -> list[EvalResult]:
        """``ind``'s results at the top fidelity, block 0 (its own result) first, as far as they go."""
        fid = self.fidelities[-1]
        known = self.known.get(ind.key, {})
        out = [ind.results[fid]] if fid in ind.results else []
        b = 1
        while out and block_label(fid, b) in known:
            out.append(known[block_label(fid, b)])
            b += 1
        return out

    def _race(self, contenders: list[Individual], incumbent: Individual | None) -> None:
        """Race the individuals that reached the top fidelity (search.core.race); their top score becomes
        the mean over their blocks (``meta.race``: blocks, score, the block count when dropped)."""
        fid = self.fidelities[-1]
        cfg = self.campaign.funnel.race
        try:
            self._block_evaluator(1)
        except RaceError as e:
            if not self.__dict__.setdefault("_race_refused", False):
                self._race_refused = True
                self.event("race", str(e))
            return

        def evaluate(inds: list[Individual], b: int) -> None:
            n = self._affordable(fid, len(inds))
            if n:
                self._evaluate(inds[:n], fid, phase="race", block=b)

        clip = getattr(getattr(self.evaluator, "config", None), "clip", None)   # RuleEvalConfig.clip
        out = race(contenders, incumbent, self.race_blocks, evaluate, cfg, clip, ident=lambda i: i.id)
        for ind in {i.id: i for i in contenders + ([incumbent] if incumbent else [])}.values():
            blocks = self.race_blocks(ind)
            if len(blocks) < 2 and ind.id not in out.dropped:
                continue
            ind.score = race_score(blocks)
            ind.meta["race"] = {"blocks": len(blocks), "score": ind.score, "dropped": out.dropped.get(ind.id)}
            self.store.update_candidate_meta(ind.id, ind.meta)
            self._observe(ind)
