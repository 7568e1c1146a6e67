"""The search loop: one generic population engine for every candidate kind (rules, prompts).

How a campaign runs (``Engine.run``)
------------------------------------
1. Seeds: the kind plugin turns ``campaign.seed_rules`` (or its own table) into texts; they are
   evaluated at every fidelity and form the initial population.
2. Each generation: the ``Strategy`` plans ``search.batch_size`` jobs (operator name + parents);
   each ``Operator`` turns its jobs into ``Proposal``s (batched, so LLM operators send one
   batch of requests); the kind plugin validates/canonicalizes each proposal
   (``KindPlugin.normalize``; for rules ``dsl.parse`` then canonical source); the novelty check
   refuses an exact canonical duplicate, then a key (fingerprint) duplicate, and re-mutates
   (bounded by ``search.max_retries``; a key duplicate that survives the retries reuses the
   cached result and costs nothing).
3. Funnel: children are screened at the cheapest fidelity; those in the top
   ``funnel.promote_fraction`` of everything screened so far go to the next fidelity, and so
   on. Each finished evaluation is written to the store in its own transaction.
4. ``Strategy.survive`` forms the next population; stalls (``search.patience`` budget units
   without a new best) restart the population from the best individual; a checkpoint (RNG
   state, population, counters) is written.
5. Stop at the first of: ``budget.evaluations`` units, ``budget.wall_seconds``; LLM use stops
   (not the campaign) at ``budget.llm_calls`` or after repeated backend errors.
6. ``KindPlugin.finalize(engine)``: for rules, the top individuals are simplified (exact then
   empirical, see search.core.simplify); prompt runs score their best on the test split.

Durability: each result is written to the store the moment the evaluator reports it final
(``evaluate(..., on_result=...)``: as each candidate's training finishes, not when its batch
does), one transaction per result. A process killed mid-batch loses only the trainings still
running; a resumed run re-plays its unfinished generation from the last checkpoint (same RNG
state, recorded LLM replies from the request cache) and reuses every evaluation that had
finished, without retraining it. The engine's own state (budget used, best, stall counter) is
updated in the batch's order once the batch is done, whichever order results arrived in, so a
resumed run ends exactly like an uninterrupted one.

Final ranking: ``search.core.ranking``. Plug-in contracts: ``search.core.plugins`` (kinds,
operators, strategies, the ``Context`` they see, the ``EngineView`` helpers are given);
registries: ``search.core.registry``; mixins: ``funnel`` (evaluation and promotion), ``checkpoint``,
``engine_operators``, ``engine_llm``.
"""
from __future__ import annotations

import inspect
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

from evaluators.base import WORST_SCORE, Candidate, EvalResult, Evaluator, Status
from evaluators.llm import LLM

from .campaign import Campaign, with_defaults
from .checkpoint import Checkpointing
from .engine_llm import LLMGate
from .engine_operators import OperatorChoice
from .events import RunLog
from .funnel import Funnel
from .operator_choice import Attempt, make_bandit, observations
from .pipeline import FrozenContext, PendingPlan, Prefetch, plan_ahead
from .plugins import Context, Operator, Strategy
from .ranking import VALIDATION, ok_score
from .registry import OPERATORS, STRATEGIES, get_kind, load_plugins
from .selection import rank_individuals, validate_winners
from .simplify import simplify_winners
from .store import DB_NAME, RunStore, StoreError
from .types import (
    Individual,
    InvalidCandidate,
    Job,
    Progress,
    Proposal,
    RunExistsError,
    RunSummary,
    Stats,
    jobs_by_operator,
)


class Engine(Funnel, OperatorChoice, LLMGate, Checkpointing):
    """Runs one campaign into one run directory. See the module docstring."""

    def __init__(self, campaign: Campaign, run_dir: str | Path | None = None, *, resume: bool = False,
                 fresh: bool = False, evaluator: Evaluator | None = None, llm: LLM | None = None,
                 progress: Progress | None = None, base_dir: str | Path = "."):
        if resume and fresh:
            raise ValueError("choose one of resume and fresh")
        if llm is not None and not isinstance(llm, LLM):
            raise TypeError(f"llm must be an evaluators.LLM backend (search.llm.make_llm builds one), "
                            f"not {type(llm).__name__}")
        load_plugins(campaign.plugins)
        self.campaign = campaign
        self.kind = get_kind(campaign.kind)
        if campaign.options is None and self.kind.options_model is not None:
            self.kind.validate(campaign)
        self.run_dir = Path(run_dir) if run_dir is not None else campaign.resolved_run_dir(base_dir)
        db = self.run_dir / DB_NAME
        if db.exists() and not (resume or fresh):
            raise RunExistsError(
                f"run directory {self.run_dir} already holds a run; use --resume to continue it "
                f"(same budget) or --fresh to delete it and start again")
        if resume and not db.exists():
            raise StoreError(f"nothing to resume: no run database at {db}; run without --resume first")
        if fresh:
            for p in (db, db.with_name(DB_NAME + "-wal"), db.with_name(DB_NAME + "-shm")):
                p.unlink(missing_ok=True)
            shutil.rmtree(self.run_dir / "eval_cache", ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.store = RunStore(db)
        if resume:
            stored = self.store.get_meta("campaign")
            if stored is not None and stored.get("name") != campaign.name:
                raise StoreError(f"{self.run_dir} holds campaign {stored.get('name')!r}, not {campaign.name!r}")
            if stored is not None:
                if "mode" not in (stored.get("funnel") or {}) and "mode" not in campaign.funnel.model_fields_set:
                    # started before racing existed: it resumes with the funnel it ran with
                    campaign.funnel.mode = "quantile"
                    stored = {**stored, "funnel": {**(stored.get("funnel") or {}), "mode": "quantile"}}
                now = campaign.model_dump(mode="json")
                # fields added to the campaign model since the run started compare as their defaults
                stored = with_defaults(stored, Campaign.model_validate(
                    {"name": campaign.name, "kind": campaign.kind}).model_dump(mode="json"))
                changed = sorted(k for k in set(now) | set(stored) if k not in ("budget", "logging")
                                 and now.get(k) != stored.get(k))
                if changed:
                    self.store.close()
                    raise StoreError(
                        f"the campaign changed since {self.run_dir} was started (fields: {', '.join(changed)}); "
                        "a resumed run must be the same campaign (the budget may change). Restore the file, "
                        "or use --fresh to start over")
                if now.get("budget") != stored.get("budget"):
                    self.store.set_meta(campaign=now)
        log = campaign.logging   # events.jsonl, hall_of_fame.csv, TensorBoard (search.core.events)
        self.progress: Progress = RunLog(progress, self.run_dir, tensorboard=log.tensorboard_dir or log.tensorboard,
                                         hall_of_fame=log.hall_of_fame)
        self.rng = random.Random(campaign.random_seed)
        self.ctx = Context(self)
        self.strategy: Strategy = STRATEGIES[campaign.search.strategy](campaign)
        self._operators: dict[str, Operator] = {}
        self.bandit = make_bandit(self)       # operator shares (search.core.bandit); checkpointed
        self.attempts: list[Attempt] = []     # this generation's proposals (the bandit's evidence)
        self.eval_charge: dict[int, list[float]] = {}   # id -> [training seconds, units] this generation
        self.pending: PendingPlan | None = None   # pipelined: the next generation's plan (checkpointed)
        self.prefetch: Prefetch | None = None     # pipelined: its LLM requests, sent in the background
        self.capture: list | None = None          # pipelined: LLM requests collected instead of sent
        self.prefetch_hits = 0                    # pipelined: LLM requests answered by a prefetch
        self.evaluator = evaluator if evaluator is not None else self.kind.make_evaluator(campaign, self.run_dir)
        self.fidelities: tuple[str, ...] = tuple(campaign.fidelities or self.evaluator.fidelities)
        #: scores the simplified winners on the validation tasks (None: no validation stage)
        #: (it shares the search's workers; a plug-in kind's older two-argument hook is still called)
        make_val = self.kind.make_validation_evaluator
        self.validator = (make_val(campaign, self.run_dir, search_evaluator=self.evaluator)
                          if "search_evaluator" in inspect.signature(make_val).parameters
                          else make_val(campaign, self.run_dir))
        self._llm = llm
        self._llm_init_done = llm is not None
        #: LLM usage totals restored from the last checkpoint (a backend's caps span resumes)
        self.resumed_llm_usage: dict | None = None
        self.llm_disabled_reason = "" if (llm is not None or campaign.llm is not None) else "no [llm] configured"
        # mutable search state (checkpointed)
        self.generation = 0
        self.next_id = 0
        self.used = 0.0
        self.llm_calls = 0
        self.llm_consecutive_errors = 0
        self.wall_before = 0.0
        self.since_improvement = 0.0
        self.best_key: tuple[int, float] = (-2, WORST_SCORE)
        self.seeded = False
        self.op_state: dict[str, Any] = {}
        self.population: list[Individual] = []
        self.individuals: dict[int, Individual] = {}
        self.known: dict[str, dict[str, EvalResult]] = {}  # key -> fidelity -> result
        self.canon_seen: dict[str, int] = {}                # canonical text -> first id
        self.level_scores: list[list[float]] = [[] for _ in self.fidelities]
        self.replay: dict[tuple[str, str], tuple[EvalResult, float, int]] = {}
        self.stats = Stats()
        self.t_start = time.monotonic()
        self.done_reason = ""
        self.used_at_start = 0.0
        if resume:
            self.restore_run()
            #: budget units used before this session (the live view's throughput counts this session)
            self.used_at_start = self.used
        else:
            self.store.set_meta(campaign=campaign.model_dump(mode="json"), kind=campaign.kind,
                                fidelities=list(self.fidelities), created=time.time(), status="running",
                                source=campaign.source_path, schema=1)

    # -- small helpers --------------------------------------------------------------
    def event(self, kind: str, message: str, **data: Any) -> None:
        self.store.add_event(kind, message, data)
        if self.progress is not None:
            self.progress.log(f"[{kind}] {message}")

    def get_operator(self, name: str) -> Operator:
        if name not in self._operators:
            if name not in OPERATORS:
                raise KeyError(f"unknown operator {name!r}; known: {sorted(OPERATORS)}")
            self._operators[name] = OPERATORS[name](self.campaign)
        return self._operators[name]

    # -- budget --------------------------------------------------------------------
    @property
    def budget_left(self) -> float:
        return self.campaign.budget.evaluations - self.used

    def wall_elapsed(self) -> float:
        return self.wall_before + (time.monotonic() - self.t_start)

    def _out_of_time(self) -> bool:
        w = self.campaign.budget.wall_seconds
        return w is not None and self.wall_elapsed() >= w

    def _affordable(self, fidelity: str, n: int) -> int:
        c = self.campaign.fidelity_cost(fidelity)
        return max(0, min(n, int(math.floor(self.budget_left / c + 1e-9))))

    # -- recording -----------------------------------------------------------------
    def _new_id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def _record_invalid(self, p: Proposal, state: str = "invalid") -> None:
        cid = self._new_id()
        self.stats.invalid[p.operator] = self.stats.invalid.get(p.operator, 0) + 1
        self.store.add_candidate(id=cid, kind=self.campaign.kind, text=p.text or "", canonical=None, key=None,
                                 parents=p.parents, operator=p.operator, generation=self.generation,
                                 state=state, reason=p.reason, raw_reply=p.raw, meta=p.meta)

    def _make_individual(self, text: str, key: str, p: Proposal, state: str = "ok") -> Individual:
        meta = dict(self.kind.describe(text))
        meta.update(p.meta)
        ind = Individual(id=self._new_id(), text=text, kind=self.campaign.kind, key=key, parents=p.parents,
                         operator=p.operator, generation=self.generation, meta=meta)
        self.canon_seen.setdefault(text, ind.id)
        self.store.add_candidate(id=ind.id, kind=ind.kind, text=text, canonical=text, key=key,
                                 parents=p.parents, operator=p.operator, generation=self.generation,
                                 state=state, raw_reply=p.raw, meta=meta)
        for pid in p.parents:
            if pid in self.individuals:
                self.individuals[pid].children += 1
        return ind

    def apply_result(self, ind: Individual, r: EvalResult) -> None:
        ind.results[r.fidelity] = r
        lvl = self.fidelities.index(r.fidelity)
        score = r.score if r.status == Status.ok and math.isfinite(r.score) else WORST_SCORE
        if lvl == 0:
            ind.screen_score = score
        if lvl >= ind.level:
            ind.level, ind.score = lvl, score
        self.individuals[ind.id] = ind

    def _observe(self, ind: Individual) -> None:
        """Track the best for stall detection."""
        if ind.rank_key() > self.best_key and ind.score > WORST_SCORE:
            self.best_key = ind.rank_key()
            self.since_improvement = 0.0

    # -- children --------------------------------------------------------------------
    def _novel(self, p: Proposal, batch_keys: set[str], last_try: bool) -> tuple[Individual | None, str]:
        """Normalize and check novelty; returns (individual or None, reason)."""
        try:
            text = self.kind.normalize(p.text or "")
        except InvalidCandidate as e:
            return None, f"invalid: {e}"
        if text in self.canon_seen:
            return None, f"duplicate: same canonical text as #{self.canon_seen[text]}"
        key = self.evaluator.key(Candidate(kind=self.campaign.kind, text=text))
        if (key in self.known or key in batch_keys) and not last_try:
            return None, "duplicate: same fingerprint as an evaluated candidate"
        return self._make_individual(text, key, p), ""

    def _make_children(self, jobs: list[Job], ctx: Context | None = None) -> list[Individual]:
        """Run the operators (batched per operator), then validate and de-duplicate each child.

        Each proposal is recorded in ``self.attempts`` with its share of the operator call's wall
        time. ``ctx``: a pipelined generation's frozen context (own RNG stream per operator)."""
        ctx = ctx or self.ctx
        proposals: list[Proposal | None] = [None] * len(jobs)
        seconds = [0.0] * len(jobs)
        for name, idx in jobs_by_operator(jobs):
            ctx.use_stream(name)
            t0 = time.perf_counter()
            out = self.get_operator(name).propose(ctx, [[p for p in jobs[j].parents] for j in idx])
            for j, p in zip(idx, out):
                proposals[j], seconds[j] = p, (time.perf_counter() - t0) / len(idx)
        ctx.use_stream("retry")
        children: list[Individual] = []
        batch_keys: set[str] = set()
        for job, p, secs in zip(jobs, proposals, seconds):
            retries = self.campaign.search.max_retries
            for attempt in range(retries + 1):
                last = attempt == retries
                is_llm = self.get_operator(p.operator).uses_llm
                skip = p.text is None and bool(p.meta.get("skip"))   # LLM unavailable: not a proposal
                if not skip:
                    self.stats.proposals[p.operator] = self.stats.proposals.get(p.operator, 0) + 1
                    self.stats.llm_proposals += int(is_llm)
                if skip:
                    ind, why = None, p.reason
                elif p.text is None:
                    ind, why = None, p.reason or "no proposal"
                else:
                    ind, why = self._novel(p, batch_keys, last)
                if not skip:
                    dup = ind is not None and (ind.key in self.known or ind.key in batch_keys)
                    self.attempts.append(Attempt(p.operator, ind, dup, is_llm, secs))
                if ind is not None:
                    self.stats.llm_valid += int(is_llm)
                    children.append(ind)
                    batch_keys.add(ind.key)
                    break
                if skip:
                    pass
                elif why.startswith("duplicate"):
                    self.stats.duplicates += 1
                    if is_llm:  # LLM duplicates are worth recording (with the raw reply)
                        self._record_invalid(Proposal(p.text, p.operator, p.parents, p.raw, why, p.meta),
                                             "duplicate")
                else:
                    self._record_invalid(Proposal(p.text, p.operator, p.parents, p.raw, why, p.meta))
                if last:
                    self.event("no_child", f"no usable child after {retries + 1} attempts "
                                           f"(operator {job.operator}, last: {why})")
                    break
                # retry: a random operator (an LLM slot never makes a second LLM call here)
                # (random operators are re-drawn too, so one stuck operator cannot waste the slot)
                name = self.fallback_operator(len(job.parents) if not is_llm else 1, ctx.rng)
                parents = job.parents[: self.get_operator(name).arity]
                t0 = time.perf_counter()
                p = self.get_operator(name).propose(ctx, [parents])[0]
                secs = time.perf_counter() - t0
        return children

    # -- seeds ---------------------------------------------------------------------
    def _seed(self) -> None:
        self.kind.begin_generation(self)
        seeds = self.kind.seed_texts(self.campaign)
        inds = []
        for label, text in seeds:
            p = Proposal(text=text, operator="seed", parents=(), meta={"seed": label})
            try:
                canon = self.kind.normalize(text)
            except InvalidCandidate as e:
                raise InvalidCandidate(f"seed {label!r} is invalid: {e}") from None
            if canon in self.canon_seen:
                continue
            key = self.evaluator.key(Candidate(kind=self.campaign.kind, text=canon))
            inds.append(self._make_individual(canon, key, p))
        evaluated = self._funnel(inds, promote_all=True)
        self.population = self.strategy.survive(self.ctx, [], evaluated)
        self.seeded = True
        self.event("seeded", f"{len(evaluated)} seed(s) evaluated",
                   scores={i.meta.get("seed", str(i.id)): i.score for i in evaluated})

    # -- main loop -------------------------------------------------------------------
    def step(self) -> list[Individual]:
        """One generation: plan, make children, funnel-evaluate, survive, update the operator
        bandit, checkpoint. Pipelined (``search.pipeline``): this generation was planned during
        the previous one, and the next is planned (its LLM requests sent) before this one trains."""
        self.generation += 1
        self.kind.begin_generation(self)
        self.attempts, self.eval_charge = [], {}
        first_id = self.next_id
        if self.pending is not None:
            plan, self.pending = self.pending, None
            try:
                children = self._make_children(plan.job_list(self.individuals), FrozenContext(self, plan))
            finally:
                self._end_prefetch()
        else:
            n = self._affordable(self.fidelities[0], self.campaign.search.batch_size)
            self.bandit.begin_generation(self.generation, self.bandit_llm_ok())
            jobs = self.strategy.plan(self.ctx, n) if n > 0 else []
            children = self._make_children(jobs)
        if self.campaign.search.pipeline:
            self.pending, self.prefetch = plan_ahead(self, children, first_id)
        evaluated = self._funnel(children)
        self.population = self.strategy.survive(self.ctx, self.population, evaluated)
        patience = self.campaign.search.patience
        if patience is not None and self.since_improvement >= patience and self.individuals:
            best = self.ctx.top(1)[0]
            self.population = self.strategy.restart(self.ctx, best)
            self.since_improvement = 0.0
            self.event("restart", f"no improvement for {patience} units: population restarted from #{best.id}",
                       best=best.id)
        self.bandit.observe(observations(self, self.attempts))
        self.kind.end_generation(self)
        self.save_checkpoint()
        return evaluated

    def _end_prefetch(self) -> None:
        """Wait for a background LLM call (pipelined runs) and drop what it did not answer."""
        if self.prefetch is not None:
            self.prefetch.wait()
            self.prefetch_hits += self.prefetch.used
            self.prefetch = None

    def run(self) -> "RunSummary":
        if self.progress is not None:
            self.progress.start(self)
        stalled = 0
        try:
            if self.campaign.operators.llm_share > 0 and not self.llm_disabled_reason:
                _ = self.llm  # load the backend now: a setup problem is reported at start-up
            if not self.seeded:
                self._seed()
                self.save_checkpoint()
            while self.budget_left >= min(self.campaign.fidelity_cost(self.fidelities[0]), 1e-9) - 1e-9 \
                    and self._affordable(self.fidelities[0], 1) > 0:
                if self._out_of_time():
                    self.done_reason = "wall time budget reached"
                    break
                evaluated = self.step()
                if self.progress is not None:
                    self.progress.update(self)
                stalled = stalled + 1 if not evaluated else 0
                if stalled >= 20:
                    self.done_reason = "no new candidates for 20 generations (search space exhausted?)"
                    self.event("stopped", self.done_reason)
                    break
            else:
                self.done_reason = "evaluation budget reached"
            self._end_prefetch()
            self.store.set_meta(status="searched", done_reason=self.done_reason, wall=self.wall_elapsed())
            self.event("searched", self.done_reason, used=self.used)
            self.kind.finalize(self)
            self.store.set_meta(status="done", wall=self.wall_elapsed())
        finally:
            if self.progress is not None:
                self.progress.stop(self)
        return self.summary()

    def simplify_winners(self) -> list[dict]:
        """Empirical simplification of the top candidates (search.core.simplify)."""
        return simplify_winners(self)

    def validate_winners(self) -> list[dict[str, Any]]:
        """The validation stage on the (simplified) winners (search.core.selection)."""
        return validate_winners(self)

    def summary(self) -> "RunSummary":
        top = rank_individuals(self, self.ctx.top(len(self.individuals)))[:5]
        return RunSummary(run_dir=str(self.run_dir), evaluations=self.store.count("evaluations"),
                          used=self.used, generations=self.generation, wall_seconds=self.wall_elapsed(),
                          llm_calls=self.llm_calls, best_id=top[0].id if top else None,
                          # a validated best is scored by its fresh validation estimate, never its search score
                          best_score=(top[0].score if not top or top[0].validation is None
                                      else ok_score(top[0].validation)) if top else WORST_SCORE,
                          best_fidelity=(VALIDATION if top[0].validation is not None
                                         else self.fidelities[top[0].level]) if top else None,
                          best_text=top[0].text if top else "", done_reason=self.done_reason,
                          stats=self.stats.to_dict())

    def close(self) -> None:
        """Release the evaluator's workers, the LLM backend and the database."""
        self._end_prefetch()
        for obj in (self.evaluator, self.validator, self._llm if self._llm_init_done else None):
            if obj is None:
                continue
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - closing must not mask the run's outcome
                pass
        self.store.close()


def run_campaign(campaign: Campaign, run_dir: str | Path | None = None, **kw: Any) -> RunSummary:
    """Convenience: build an Engine, run it, close the store."""
    eng = Engine(campaign, run_dir, **kw)
    try:
        return eng.run()
    finally:
        eng.close()
