"""Pipelined generations (``[search] pipeline = true``): the next batch's LLM requests are sent
while the current batch trains, so LLM latency hides behind evaluation.

Semantics (generation ``g`` trains while ``g + 1`` is proposed):

1. Right after generation ``g``'s children are made, and before any of them is evaluated,
   generation ``g + 1`` is **planned** (operators and parents, ``Strategy.plan``) from the
   population and operator shares as they are then: after generation ``g - 1``. Its size is
   ``search.batch_size`` capped by the budget left minus ``g``'s screening cost.
2. Its proposals see a **frozen context** (:class:`FrozenContext`): the candidates evaluated
   before generation ``g`` (ids below ``cutoff``), the population at planning time, generation
   ``g + 1``, and their own RNG streams seeded from the engine's RNG at planning (one stream
   per operator, one for retries), so what one operator draws never shifts another's requests.
3. First pass, at planning: every operator of the plan runs on the frozen context with LLM
   calls **captured** instead of sent (LLM operators then propose nothing); the captured
   requests go to the backend in a background thread (:class:`Prefetch`) while ``g`` trains.
4. Second pass, when ``g + 1`` starts (``g`` fully evaluated): the operators run again on the
   same frozen context and streams, so they build the same requests, which are answered from
   the prefetch (anything else, e.g. repair requests, goes to the backend then). Replies are
   parsed, validated and checked for novelty against everything evaluated so far, ``g``
   included, and each LLM call is recorded in the run store as in the sequential loop.
5. The checkpoint after ``g`` holds the pending plan (:class:`PendingPlan`: jobs, seed,
   cutoff, population); a resumed run makes ``g + 1``'s children from it with the same
   requests (their replies come from the request cache), so it ends exactly like an
   uninterrupted pipelined run.

A pipelined run is not the same run as a sequential one (parents and operator shares lag one
generation), which is why it is opt-in. The LLM cost the operator bandit charges is the time
the search actually waited for the LLM (the part not hidden behind training).
"""
from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from .plugins import Context, EngineView
from .types import Individual, Job, jobs_by_operator


@dataclass
class PendingPlan:
    """A planned generation whose children are not made yet (checkpointed as JSON)."""
    generation: int
    jobs: list[tuple[str, list[int]]]     # (operator, parent ids)
    seed: int                             # the proposals' RNG streams derive from it
    cutoff: int                           # the proposals see evaluated candidates with id < cutoff
    population: list[int]                 # population ids at planning time

    def to_json(self) -> dict[str, Any]:
        return {"generation": self.generation, "jobs": [[op, list(p)] for op, p in self.jobs],
                "seed": self.seed, "cutoff": self.cutoff, "population": list(self.population)}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> "PendingPlan | None":
        if not d:
            return None
        return cls(int(d["generation"]), [(str(op), [int(i) for i in p]) for op, p in d["jobs"]], int(d["seed"]),
                   int(d["cutoff"]), [int(i) for i in d["population"]])

    def job_list(self, individuals: dict[int, Individual]) -> list[Job]:
        return [Job(op, [individuals[i] for i in ids if i in individuals]) for op, ids in self.jobs]


class FrozenContext(Context):
    """The engine as a pipelined generation's operators see it (see the module docstring)."""

    def __init__(self, engine: EngineView, plan: PendingPlan):
        super().__init__(engine)
        self.plan = plan
        self._streams: dict[str, random.Random] = {}
        self._rng = self.stream("propose")
        self._history: dict[int, Individual] | None = None

    def stream(self, name: str) -> random.Random:
        """The RNG stream ``name`` of this plan (an operator's name, or "retry")."""
        if name not in self._streams:
            self._streams[name] = random.Random(f"{self.plan.seed}:{name}")
        return self._streams[name]

    def use_stream(self, name: str) -> None:
        self._rng = self.stream(name)

    @property
    def rng(self) -> random.Random:
        return self._rng

    @property
    def history(self) -> dict[int, Individual]:
        if self._history is None:
            self._history = {i: ind for i, ind in self._e.individuals.items() if i < self.plan.cutoff}
        return self._history

    @property
    def population(self) -> list[Individual]:
        live = self._e.individuals
        return [live[i] for i in self.plan.population if i in live]

    @property
    def generation(self) -> int:
        return self.plan.generation


@dataclass
class Prefetch:
    """LLM requests sent in a background thread; ``take`` answers the identical ones."""
    llm: Any
    requests: list[Any]
    responses: list[Any] | None = None   # None: the call failed (the second pass asks the backend again)
    used: int = 0                 # requests answered from it
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> "Prefetch":
        def work() -> None:
            try:
                out = self.llm.chat(self.requests)
                self.responses = list(out) if out is not None and len(out) == len(self.requests) else None
            except Exception:  # noqa: BLE001 - answered by the backend again in the second pass
                self.responses = None

        self._thread = threading.Thread(target=work, name="optforge-llm-prefetch", daemon=True)
        self._thread.start()
        return self

    def wait(self) -> None:
        """Block until the background call is done."""
        if self._thread is not None:
            self._thread.join()

    def answer(self, requests: list[Any]) -> list[Any]:
        """Replies to ``requests``: the prefetched ones, the others from the backend now (in order)."""
        got = self.take(requests)
        rest = [k for k, r in enumerate(got) if r is None]
        if rest:
            more = self.llm.chat([requests[k] for k in rest])
            if more is None or len(more) != len(rest):
                return more   # the engine reports the backend's failure
            for k, r in zip(rest, more):
                got[k] = r
        return got

    def take(self, requests: list[Any]) -> list[Any | None]:
        """The response or None per request (after :meth:`wait`): a request is answered when it
        equals a prefetched one (same JSON); each prefetched reply is used once."""
        self.wait()
        if self.responses is None:
            return [None] * len(requests)
        pool: dict[str, list[int]] = {}
        for k, rq in enumerate(self.requests):
            pool.setdefault(rq.model_dump_json(), []).append(k)
        out: list[Any | None] = []
        for rq in requests:
            ks = pool.get(rq.model_dump_json())
            if ks:
                k = ks.pop(0)
                r = self.responses[k]
                ok = not getattr(r, "error", None)
                self.used += int(ok)
                out.append(r if ok else None)
            else:
                out.append(None)
        return out


def plan_ahead(engine: EngineView, children: list[Individual],
               first_id: int) -> tuple[PendingPlan | None, Prefetch | None]:
    """Plan the next generation now (before ``children`` train) and send its first-round LLM
    requests in the background: (the plan, its running prefetch), or Nones when there is nothing
    to plan (the budget left after ``children`` buys no child, or the strategy plans none)."""
    c0 = engine.campaign.fidelity_cost(engine.fidelities[0])
    left = engine.budget_left - c0 * len(children)
    n = max(0, min(engine.campaign.search.batch_size, int(math.floor(left / c0 + 1e-9))))
    if n <= 0:
        return None, None   # the next generation is planned when it starts, with the budget then left
    nxt = engine.generation + 1
    engine.bandit.begin_generation(nxt, engine.bandit_llm_ok())
    jobs = engine.strategy.plan(engine.ctx, n)
    if not jobs:
        return None, None
    plan = PendingPlan(nxt, [(j.operator, [p.id for p in j.parents]) for j in jobs], engine.rng.getrandbits(62),
                       first_id, [i.id for i in engine.population])
    requests = capture_requests(engine, plan, jobs)
    return plan, (Prefetch(engine.llm, requests).start() if requests else None)


def capture_requests(engine: EngineView, plan: PendingPlan, jobs: list[Job]) -> list[Any]:
    """First pass: run the plan's LLM operators on its frozen context, collecting their
    requests instead of sending them (the operators' own proposals are discarded)."""
    ctx = FrozenContext(engine, plan)
    captured: list[Any] = []
    engine.capture = captured
    try:
        for name, idx in jobs_by_operator(jobs):
            op = engine.get_operator(name)
            if not op.uses_llm:
                continue     # random operators have their own streams: skipping them shifts nothing
            ctx.use_stream(name)
            op.propose(ctx, [list(jobs[j].parents) for j in idx])
    finally:
        engine.capture = None
    return captured
