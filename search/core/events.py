"""What a run writes beside its SQLite store while it runs, for tools that do not read SQLite.

- ``events.jsonl`` (always): one JSON object per line, appended as the run goes: ``start``, every
  finished ``evaluation``, every ``generation`` (best score, population statistics, each
  operator's share of the generation's proposals, LLM calls, budget used), every engine event
  (``restart``, ``validation``, ...) under its own name, and ``end``. Each line has ``t`` (Unix
  time) and ``event``. A resumed run appends to the same file.
- ``hall_of_fame.csv`` (always): the best candidates so far in the final ranking's order, rewritten
  after each generation and at the end (as PySR does): ``rank, id, score, interval, size, fidelity,
  validation, source``. ``interval`` is the 95% bootstrap interval of the score over tasks and
  paired seeds (``evaluators.estimate``; empty with one task and one seed).
- TensorBoard event files (``[logging] tensorboard = true`` or ``optforge run --tensorboard``):
  the same per-generation numbers as scalars, step = generation (``best/score``,
  ``population/{mean,median,max,min,size}``, ``operators/share/<name>``, ``llm/calls``,
  ``llm/valid_rate``, ``budget/used``, ``evaluations/per_minute``) and the best program as text
  when it changes. ``tensorboard --logdir runs/<name>/tensorboard`` shows them.

``RunLog`` is a ``Progress``: the engine wraps its own progress view in one, so every run writes
these whatever displays it.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from evaluators import WORST_SCORE, EvalResult, StatsError, Status, estimate, per_seed_log_ratios

from .selection import rank_individuals
from .types import Individual, Progress

EVENTS_FILE = "events.jsonl"
HALL_OF_FAME_FILE = "hall_of_fame.csv"
HALL_OF_FAME_COLUMNS = ("rank", "id", "score", "interval", "size", "fidelity", "validation", "source")


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) and x > WORST_SCORE else None


def interval_of(ind: Individual, fidelity: str, clip: float | None, n_boot: int = 1000) -> tuple[float, float] | None:
    """The 95% bootstrap interval of ``ind``'s score at ``fidelity`` (None without paired seeds)."""
    r = ind.results.get(fidelity)
    if r is None or r.status != Status.ok or not r.tasks:
        return None
    try:
        per = {t: per_seed_log_ratios(tr, clip) for t, tr in r.tasks.items() if tr.status == Status.ok}
        if len(per) != len(r.tasks) or not all(math.isfinite(float(x)) for v in per.values() for x in v):
            return None
        e = estimate(per, n_boot=n_boot, seed=ind.id)
    except StatsError:
        return None
    return e.ci if (e.n_tasks > 1 or e.n_seeds > 1) else None


class RunLog(Progress):
    """Forwards every hook to ``inner`` and writes the files of the module docstring into ``run_dir``.

    ``tensorboard``: False (off), True (``<run_dir>/tensorboard``) or a directory."""

    def __init__(self, inner: Progress | None, run_dir: str | Path, *, tensorboard: bool | str | Path = False,
                 hall_of_fame: int = 50):
        self.inner = inner
        self.run_dir = Path(run_dir)
        self.tb_dir: Path | None = None
        if tensorboard:
            self.tb_dir = self.run_dir / "tensorboard" if tensorboard is True else Path(tensorboard)
        self.hall_size = hall_of_fame
        self._fh: io.TextIOBase | None = None
        self._tb: Any = None
        self._gen = -1
        self._evals = 0
        self._event_id = 0
        self._best_text = ""
        self._intervals: dict[tuple[int, int], tuple[float, float] | None] = {}

    # -- Progress hooks ------------------------------------------------------------------
    def start(self, engine: Any) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.run_dir / EVENTS_FILE, "a", encoding="utf-8")   # noqa: SIM115 - closed in stop()
        self._evals = engine.store.count("evaluations")
        self._event_id = self._last_event_id(engine)
        self._gen = engine.generation
        if self.tb_dir is not None:
            self._tb = tensorboard_writer(self.tb_dir)
        self.write("start", campaign=engine.campaign.name, kind=engine.campaign.kind,
                   fidelities=list(engine.fidelities), budget=engine.campaign.budget.evaluations,
                   resumed=engine.generation > 0, generation=engine.generation)
        if self.inner is not None:
            self.inner.start(engine)

    def update(self, engine: Any) -> None:
        self._new_evaluations(engine)
        self._new_events(engine)
        if engine.generation != self._gen:
            self._gen = engine.generation
            self._generation(engine)
        if self.inner is not None:
            self.inner.update(engine)

    def log(self, message: str) -> None:
        if self.inner is not None:
            self.inner.log(message)

    def stop(self, engine: Any) -> None:
        try:
            self._new_evaluations(engine)
            self._new_events(engine)
            self.write_hall_of_fame(engine)
            s = engine.summary()   # the run's final best (validated first), as `optforge run` reports it
            self.write("end", status=engine.store.get_meta("status"), done_reason=engine.done_reason,
                       used=engine.used, generations=engine.generation, wall_seconds=engine.wall_elapsed(),
                       best_id=s.best_id, best_score=_finite(s.best_score), best_fidelity=s.best_fidelity)
        finally:
            if self._tb is not None:
                self._tb.close()
                self._tb = None
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            if self.inner is not None:
                self.inner.stop(engine)

    # -- writing ---------------------------------------------------------------------------
    def write(self, event: str, **data: Any) -> None:
        """One line of ``events.jsonl`` (flushed: a killed run keeps what it wrote)."""
        if self._fh is None:
            return
        self._fh.write(json.dumps({"t": round(time.time(), 3), "event": event, **data}, default=str) + "\n")
        self._fh.flush()

    def _last_event_id(self, engine: Any) -> int:
        row = engine.store.conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        return int(row[0])

    def _new_events(self, engine: Any) -> None:
        rows = engine.store.conn.execute("SELECT id, kind, message, data FROM events WHERE id > ? ORDER BY id",
                                         (self._event_id,)).fetchall()
        for r in rows:
            self._event_id = int(r[0])
            self.write(str(r[1]), message=r[2], data=json.loads(r[3]))

    def _new_evaluations(self, engine: Any) -> None:
        rows = engine.store.conn.execute(
            "SELECT seq, candidate_id, fidelity, score, status, cost, seconds, phase FROM evaluations WHERE seq >= ? "
            "ORDER BY seq", (self._evals,)).fetchall()
        for r in rows:
            self._evals = int(r[0]) + 1
            self.write("evaluation", seq=r[0], candidate=r[1], fidelity=r[2],
                       score=_finite(r[3]) if r[4] == "ok" else None, status=r[4], cost=r[5],
                       seconds=round(float(r[6]), 3), phase=r[7])

    def _generation(self, engine: Any) -> None:
        top = engine.ctx.top(1)
        best = top[0] if top else None
        pop = [s for s in (_finite(i.score) for i in engine.population) if s is not None]
        ops = Counter(a.operator for a in getattr(engine, "attempts", []))
        shares = {o: n / sum(ops.values()) for o, n in sorted(ops.items())}
        st = engine.stats
        elapsed = max(1e-9, time.monotonic() - engine.t_start)
        rec = {"generation": engine.generation, "used": engine.used,
               "best_score": _finite(best.score) if best else None, "best_id": best.id if best else None,
               "best_fidelity": engine.fidelities[best.level] if best and best.level >= 0 else None,
               "population": {"size": len(engine.population), "scored": len(pop),
                              "mean": statistics.fmean(pop) if pop else None,
                              "median": statistics.median(pop) if pop else None,
                              "max": max(pop) if pop else None, "min": min(pop) if pop else None},
               "operator_shares": shares, "llm_calls": engine.llm_calls,
               "llm_valid_rate": st.llm_valid / st.llm_proposals if st.llm_proposals else None,
               "invalid": sum(st.invalid.values()), "duplicates": st.duplicates,
               "evaluations_per_minute": (engine.used - engine.used_at_start) / elapsed * 60.0}
        self.write("generation", **rec)
        self.write_hall_of_fame(engine)
        if self._tb is not None:
            self._tensorboard(engine, rec, best)

    def _tensorboard(self, engine: Any, rec: dict, best: Individual | None) -> None:
        step = rec["generation"]
        scalars = {"best/score": rec["best_score"], "budget/used": rec["used"], "llm/calls": rec["llm_calls"],
                   "llm/valid_rate": rec["llm_valid_rate"], "evaluations/per_minute": rec["evaluations_per_minute"]}
        scalars.update({f"population/{k}": v for k, v in rec["population"].items()})
        scalars.update({f"operators/share/{o}": v for o, v in rec["operator_shares"].items()})
        for tag, v in scalars.items():
            if v is not None:
                self._tb.add_scalar(tag, float(v), step)
        if best is not None and best.text != self._best_text:
            self._best_text = best.text
            body = engine.kind.display(best.text)
            self._tb.add_text("best/program", f"#{best.id} score {rec['best_score']}\n\n    "
                              + body.replace("\n", "\n    "), step)
        self._tb.flush()

    def write_hall_of_fame(self, engine: Any) -> None:
        """Rewrite ``hall_of_fame.csv`` (atomically: a reader never sees half a file)."""
        items = [i for i in engine.individuals.values() if i.level >= 0 and i.operator != "simplify"]
        ranked = rank_individuals(engine, items)[: self.hall_size]
        clip = getattr(getattr(engine.evaluator, "config", None), "clip", None)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(HALL_OF_FAME_COLUMNS)
        for rank, ind in enumerate(ranked, 1):
            fid = engine.fidelities[ind.level]
            if (ind.id, ind.level) not in self._intervals:
                self._intervals[(ind.id, ind.level)] = interval_of(ind, fid, clip)
            ci = self._intervals[(ind.id, ind.level)]
            v = ind.validation
            val = _finite(v.score) if v is not None and v.status == Status.ok else None
            score = _finite(ind.score)
            w.writerow([rank, ind.id, "" if score is None else f"{score:.6g}",
                        "" if ci is None else f"[{ci[0]:.4g}, {ci[1]:.4g}]", ind.meta.get("size", ""), fid,
                        "" if val is None else f"{val:.6g}", engine.kind.display(ind.text)])
        path = self.run_dir / HALL_OF_FAME_FILE
        tmp = path.with_suffix(".csv.tmp")
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, path)


def tensorboard_writer(logdir: str | Path) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` into ``logdir``; imported here, when TensorBoard is
    asked for, because the import costs about 0.8 s (measured at load 11 on the 2-core container)."""
    from torch.utils.tensorboard import SummaryWriter
    Path(logdir).mkdir(parents=True, exist_ok=True)
    return SummaryWriter(log_dir=str(logdir))


def curves_to_tensorboard(result: EvalResult, logdir: str | Path, label: str = "rule",
                          baseline: str = "adamw") -> Path:
    """A rule's training curves (``optforge eval RULE --tensorboard DIR``) as TensorBoard scalars: one run
    folder for the rule (``DIR/<label>``) and one for the tuned baseline (``DIR/<baseline>``), with the
    same tags ``<metric>/<task>`` (step = training step), so TensorBoard overlays rule and baseline per
    task; the rule's folder also gets ``score/<task>`` and ``score/overall`` (step 0)."""
    root = Path(logdir)
    names = {"rule": _safe(label),   # a baseline given as DSL source gets a generic name
             "baseline": f"tuned_{baseline}" if baseline.isidentifier() else "tuned_baseline"}
    if names["rule"] == names["baseline"]:
        names["rule"] += "_rule"
    writers = {k: tensorboard_writer(root / v) for k, v in names.items()}
    try:
        for t, tr in result.tasks.items():
            x = tr.extra
            for who, curve, steps in (("rule", tr.curve, x.get("curve_steps")),
                                      ("baseline", x.get("baseline_curve"), x.get("baseline_curve_steps"))):
                for i, y in enumerate(curve or []):
                    step = int(steps[i]) if steps and i < len(steps) else i
                    if y is not None and math.isfinite(float(y)):
                        writers[who].add_scalar(f"{tr.metric_name}/{t}", float(y), step)
            if tr.status == Status.ok and math.isfinite(tr.score):
                writers["rule"].add_scalar(f"score/{t}", float(tr.score), 0)
        if result.status == Status.ok and math.isfinite(result.score):
            writers["rule"].add_scalar("score/overall", float(result.score), 0)
    finally:
        for w in writers.values():
            w.close()
    return root


def _safe(name: str) -> str:
    """A folder name from a rule's label (a path or a library name)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(name).stem or name) or "rule"


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    """The lines of a run's ``events.jsonl`` (an empty list when it has none)."""
    p = Path(run_dir) / EVENTS_FILE
    if not p.is_file():
        return []
    return [json.loads(ln) for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]


__all__ = ["RunLog", "EVENTS_FILE", "HALL_OF_FAME_FILE", "HALL_OF_FAME_COLUMNS", "interval_of", "read_events",
           "tensorboard_writer", "curves_to_tensorboard"]
