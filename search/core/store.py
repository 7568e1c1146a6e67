"""The run store: one SQLite file per run (``runs/<name>/run.sqlite``), written as results arrive.

Stdlib ``sqlite3`` in WAL mode; every write is its own short transaction, so killing the
process at any moment loses nothing that was finished (a SIGKILL mid-transaction rolls that
one transaction back and nothing else). ``synchronous=NORMAL`` is durable against a process
crash (the risk it leaves is an OS crash / power loss, where the last transactions can go).

Tables
- ``meta(key, value)``: campaign (JSON and TOML text), created time, schema version, status.
- ``candidates``: every proposal, valid or not: text, canonical source, cache key (fingerprint),
  parents (JSON list of ids), operator, generation, state (``ok`` | ``invalid`` | ``duplicate``
  | ``simplify``), invalid reason, the LLM's raw reply, meta (JSON).
- ``evaluations``: one row per finished training evaluation (key, fidelity) with the full
  ``EvalResult`` JSON, its cost in budget units, its order ``seq``, the candidate that
  triggered it and its phase (``search``, or ``simplify`` for the winners' simplification,
  which costs 0 search units). Unique on (key, fidelity): a fingerprint is never trained twice.
- ``llm_calls``: each LLM request/reply (purpose, request JSON, reply, error, tokens, latency).
- ``checkpoints``: the engine's state after its last generation (RNG state, population, counters);
  only the last row is read, so each new one replaces the one before (same transaction).
- ``checkpoint_history``: the operator bandit's share history, one row per entry, appended as it
  grows; a checkpoint row holds the number of entries it covers. Together these keep the file
  linear in the run's length (a row per generation holding the whole history was quadratic).
- ``events``: a log (restarts, LLM disabled, simplification steps, ...).
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evaluators.base import WORST_SCORE, EvalResult, Status

from .ranking import rank_rows
from .types import StoreError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    canonical TEXT,
    key TEXT,
    parents TEXT NOT NULL DEFAULT '[]',
    operator TEXT NOT NULL,
    generation INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    raw_reply TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS candidates_key ON candidates(key);
CREATE TABLE IF NOT EXISTS evaluations (
    seq INTEGER PRIMARY KEY,
    candidate_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    fidelity TEXT NOT NULL,
    score REAL NOT NULL,
    status TEXT NOT NULL,
    cost REAL NOT NULL,
    seconds REAL NOT NULL,
    result TEXT NOT NULL,
    phase TEXT NOT NULL DEFAULT 'search',
    created REAL NOT NULL,
    UNIQUE(key, fidelity)
);
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    candidate_id INTEGER,
    purpose TEXT NOT NULL,
    request TEXT NOT NULL,
    reply TEXT,
    error TEXT,
    tokens INTEGER NOT NULL DEFAULT 0,
    latency_s REAL NOT NULL DEFAULT 0,
    cached INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    generation INTEGER NOT NULL,
    next_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint_history (pos INTEGER PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    t REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
"""

DB_NAME = "run.sqlite"


def db_path(run: str | Path) -> Path:
    """The database of a run: accepts the run directory or the .sqlite file itself."""
    p = Path(run)
    return p if p.suffix == ".sqlite" else p / DB_NAME


class RunStore:
    """Read/write access to one run's database. Open read-only for inspection (``show``)."""

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = db_path(path)
        self.readonly = readonly
        self._hist_written: int | None = None   # checkpoint_history rows known written (None: not read yet)
        if readonly:
            if not self.path.is_file():
                raise StoreError(f"no run database at {self.path} (expected a run directory made by "
                                 "'optforge run', e.g. runs/demo)")
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
        self.conn.row_factory = sqlite3.Row

    # -- plumbing -----------------------------------------------------------------
    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction: all or nothing."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- meta -------------------------------------------------------------------------
    def set_meta(self, **items: Any) -> None:
        with self.tx() as c:
            for k, v in items.items():
                c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (k, json.dumps(v)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def is_initialized(self) -> bool:
        return self.get_meta("campaign") is not None

    # -- writes ---------------------------------------------------------------------
    def add_candidate(self, *, id: int, kind: str, text: str, canonical: str | None, key: str | None,
                      parents: list[int] | tuple[int, ...], operator: str, generation: int, state: str,
                      reason: str = "", raw_reply: str | None = None, meta: dict | None = None) -> None:
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO candidates(id, kind, text, canonical, key, parents, operator, "
                      "generation, state, reason, raw_reply, meta, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                      (id, kind, text, canonical, key, json.dumps(list(parents)), operator, generation, state,
                       reason, raw_reply, json.dumps(meta or {}, sort_keys=True), time.time()))

    def update_candidate_meta(self, cid: int, meta: dict) -> None:
        with self.tx() as c:
            c.execute("UPDATE candidates SET meta=? WHERE id=?", (json.dumps(meta, sort_keys=True), cid))

    def add_evaluation(self, *, seq: int, candidate_id: int, key: str, fidelity: str, result_json: str,
                       score: float, status: str, cost: float, seconds: float, phase: str = "search") -> None:
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO evaluations(seq, candidate_id, key, fidelity, score, status, "
                      "cost, seconds, result, phase, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                      (seq, candidate_id, key, fidelity, score, status, cost, seconds, result_json, phase,
                       time.time()))

    def add_result(self, candidate_id: int, key: str, r: EvalResult, *, fidelity: str, cost: float,
                   phase: str) -> None:
        """One finished evaluation (:meth:`add_evaluation` of ``r``); its ``seq`` is the arrival order."""
        self.add_evaluation(seq=self.count("evaluations"), candidate_id=candidate_id, key=key, fidelity=fidelity,
                            result_json=r.model_dump_json(), score=float(r.score), status=str(r.status.value),
                            cost=cost, seconds=float(r.seconds), phase=phase)

    def add_llm_call(self, *, candidate_id: int | None, purpose: str, request: str, reply: str | None,
                     error: str | None, tokens: int, latency_s: float, cached: bool) -> None:
        with self.tx() as c:
            c.execute("INSERT INTO llm_calls(candidate_id, purpose, request, reply, error, tokens, latency_s, "
                      "cached, created) VALUES (?,?,?,?,?,?,?,?,?)",
                      (candidate_id, purpose, request, reply, error, tokens, latency_s, int(cached),
                       time.time()))

    def add_event(self, kind: str, message: str, data: dict | None = None) -> None:
        with self.tx() as c:
            c.execute("INSERT INTO events(t, kind, message, data) VALUES (?,?,?,?)",
                      (time.time(), kind, message, json.dumps(data or {}, sort_keys=True, default=str)))

    def save_checkpoint(self, generation: int, next_id: int, state: dict) -> None:
        """Write ``state`` as the run's checkpoint, replacing the previous one in the same transaction.

        The operator bandit's history (``state["operators"]["history"]``, one entry per generation)
        goes to ``checkpoint_history``: only the entries not written yet, plus the last written one
        (the bandit may still revise its latest entry), so a checkpoint costs O(1) rows, not O(run)."""
        ops = state.get("operators")
        hist = ops.get("history") if isinstance(ops, dict) else None
        if hist is not None:
            state = dict(state)
            state["operators"] = {k: v for k, v in ops.items() if k != "history"} | {"history_rows": len(hist)}
        with self.tx() as c:
            if hist is not None:
                if self._hist_written is None:
                    self._hist_written = int(c.execute("SELECT COUNT(*) FROM checkpoint_history").fetchone()[0])
                start = max(0, min(self._hist_written, len(hist)) - 1)
                c.execute("DELETE FROM checkpoint_history WHERE pos >= ?", (len(hist),))
                c.executemany("INSERT OR REPLACE INTO checkpoint_history(pos, entry) VALUES (?, ?)",
                              [(i, json.dumps(hist[i], sort_keys=True)) for i in range(start, len(hist))])
            cur = c.execute("INSERT INTO checkpoints(generation, next_id, state, created) VALUES (?,?,?,?)",
                            (generation, next_id, json.dumps(state, sort_keys=True), time.time()))
            c.execute("DELETE FROM checkpoints WHERE id < ?", (cur.lastrowid,))
        if hist is not None:
            self._hist_written = len(hist)

    def truncate_after_checkpoint(self, next_id: int) -> None:
        """Forget the proposals of an unfinished generation (it is re-run identically on resume).

        Finished evaluations are never deleted: the re-run finds them and reuses them.
        """
        with self.tx() as c:
            c.execute("DELETE FROM candidates WHERE id >= ?", (next_id,))
            c.execute("DELETE FROM llm_calls WHERE candidate_id >= ?", (next_id,))

    # -- reads ------------------------------------------------------------------------
    def last_checkpoint(self) -> dict | None:
        """The last checkpoint, its operator history put back in place (rows of older runs hold it inline)."""
        row = self.conn.execute("SELECT * FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        state = json.loads(row["state"])
        ops = state.get("operators")
        if isinstance(ops, dict) and "history_rows" in ops:
            n = int(ops.pop("history_rows"))
            ops["history"] = [json.loads(r[0]) for r in self.conn.execute(
                "SELECT entry FROM checkpoint_history WHERE pos < ? ORDER BY pos", (n,))]
        return {"generation": row["generation"], "next_id": row["next_id"], "state": state}

    def candidates(self, *, state: str | None = None) -> list[dict]:
        q = "SELECT * FROM candidates" + (" WHERE state=?" if state else "") + " ORDER BY id"
        rows = self.conn.execute(q, (state,) if state else ()).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["parents"] = json.loads(d["parents"])
            d["meta"] = json.loads(d["meta"])
            out.append(d)
        return out

    def candidate(self, cid: int) -> dict | None:
        r = self.conn.execute("SELECT * FROM candidates WHERE id=?", (cid,)).fetchone()
        if r is None:
            return None
        d = dict(r)
        d["parents"] = json.loads(d["parents"])
        d["meta"] = json.loads(d["meta"])
        return d

    def evaluations(self) -> list[dict]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM evaluations ORDER BY seq").fetchall()]

    def events(self, kind: str | None = None) -> list[dict]:
        q = "SELECT * FROM events" + (" WHERE kind=?" if kind else "") + " ORDER BY id"
        return [dict(r) | {"data": json.loads(r["data"])}
                for r in self.conn.execute(q, (kind,) if kind else ()).fetchall()]

    def llm_calls(self) -> list[dict]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM llm_calls ORDER BY id").fetchall()]

    def count(self, table: str) -> int:
        assert table in ("candidates", "evaluations", "llm_calls", "checkpoints", "checkpoint_history", "events")
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def used_budget(self) -> float:
        return float(self.conn.execute("SELECT COALESCE(SUM(cost), 0) FROM evaluations").fetchone()[0])

    def count_search_evaluations(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM evaluations WHERE phase='search'").fetchone()[0])


# -- reading a run (show / export / report) ------------------------------------------------

class RunView:
    """A finished or running run, read-only: candidates with their results, ranked.

    Each entry of ``individuals`` is the candidate row plus ``results`` (fidelity ->
    EvalResult), ``level`` (index of the highest fidelity with a result) and ``score`` (the
    score there; failures count as the worst score). Ranking is the engine's: highest
    fidelity reached first, then the score. Everything is read once, when the view is made
    (a view of a running run is a snapshot), so ``ranked()`` ranks once and keeps the order.
    """

    def __init__(self, run: str | Path):
        self.path = db_path(run)
        self.run_dir = self.path.parent
        self.store = RunStore(self.path, readonly=True)
        self.campaign: dict = self.store.get_meta("campaign") or {}
        self.kind: str = self.store.get_meta("kind", "rule")
        self.fidelities: list[str] = self.store.get_meta("fidelities", [])
        self.status: str = self.store.get_meta("status", "unknown")
        self.evaluations = self.store.evaluations()
        # A search candidate is ranked on what the search measured, as the engine ranks it: a
        # simplification try that happens to compute the same function (same key) at a higher
        # fidelity must not lift a search candidate the engine never promoted.
        by_key: dict[str, dict] = {}
        by_key_search: dict[str, dict] = {}
        validation: dict[int, EvalResult] = {}   # candidate id -> its validation result (the last)
        for e in self.evaluations:
            r = EvalResult.model_validate_json(e["result"])
            if e.get("phase") == "validation":
                validation[e["candidate_id"]] = r
                continue
            by_key.setdefault(e["key"], {})[e["fidelity"]] = r
            if e.get("phase", "search") == "search":
                by_key_search.setdefault(e["key"], {})[e["fidelity"]] = r
        self.all = self.store.candidates()
        self.by_id = {c["id"]: c for c in self.all}
        self.individuals: list[dict] = []
        for c in self.all:
            res = (by_key_search if c["state"] == "ok" else by_key).get(c["key"] or "", {}) \
                if c["state"] in ("ok", "simplify") else {}
            c["results"] = {f: res[f] for f in self.fidelities if f in res}
            c["level"], c["score"] = -1, WORST_SCORE
            c["validation"] = validation.get(c["id"]) if c["state"] == "ok" else None
            for lvl, f in enumerate(self.fidelities):
                if f in res:
                    r = res[f]
                    c["level"] = lvl
                    c["score"] = r.score if r.status == Status.ok and r.score == r.score else WORST_SCORE
            race = c["meta"].get("race") if c["state"] == "ok" else None
            if race and c["level"] == len(self.fidelities) - 1:    # raced: the mean over its seed blocks
                c["score"] = float(race["score"])
            if c["state"] == "ok" and c["level"] >= 0:
                self.individuals.append(c)
        self._ranked: list[dict] | None = None

    def ranked(self) -> list[dict]:
        """The engine's final ranking (search.core.selection): validated candidates first (a new list
        each call; the ranking is computed on the first)."""
        if self._ranked is None:
            noise = float((self.campaign.get("validation") or {}).get("noise", 0.0))
            self._ranked = rank_rows(self.individuals, self.fidelities, noise)
        return list(self._ranked)

    def verification(self) -> dict | None:
        """The last ``optforge verify`` of this run (search.rules.verify), or None."""
        return self.store.get_meta("verify")

    def verifications_vs(self) -> dict[str, dict]:
        """``optforge verify --baseline RULE`` records of this run, by baseline name (may be empty)."""
        return self.store.get_meta("verify_vs") or {}

    def lineage(self, cid: int, limit: int = 200) -> list[dict]:
        """The chain of first parents from ``cid`` back to a seed (the candidate first)."""
        out, seen = [], set()
        cur = self.by_id.get(cid)
        while cur is not None and cur["id"] not in seen and len(out) < limit:
            out.append(cur)
            seen.add(cur["id"])
            cur = self.by_id.get(cur["parents"][0]) if cur["parents"] else None
        return out

    def close(self) -> None:
        self.store.close()
