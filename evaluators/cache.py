"""Result cache: (key, fidelity, evaluator config hash) -> EvalResult, in memory and in SQLite.

The key is the DSL fingerprint for rules, so two programs that compute the
same function (renamed, reordered, simplified) share one entry and are never
trained twice. The config hash covers everything else that changes a score
(tasks, learning-rate grid, seeds, baseline), so changing the protocol never
returns a stale score.

SQLite (stdlib ``sqlite3``) in WAL mode lets a campaign and an ``optforge eval``
share one file; every write is its own transaction, so a killed process loses
nothing that was written. Besides results, the cache stores small JSON
"blobs" by namespace (the evaluator keeps its tuned-AdamW baselines there).
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .base import EvalResult

#: File name used when the cache is given a directory.
DB_NAME = "eval_cache.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT NOT NULL,
    fidelity TEXT NOT NULL,
    config TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (key, fidelity, config)
);
CREATE TABLE IF NOT EXISTS blobs (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (namespace, key)
);
"""


class EvalCache:
    """Evaluation results by (key, fidelity, config hash); memory always, SQLite when ``path`` is given.

    ``path`` is a SQLite file or a directory (the file is then ``<dir>/eval_cache.sqlite``).
    A hit is returned as a copy with ``cached=True``. Thread-safe.
    """

    def __init__(self, path: str | Path | None = None):
        self._mem: dict[tuple[str, str, str], str] = {}
        self._blobs: dict[tuple[str, str], Any] = {}
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self.path: Path | None = None
        self.hits = 0
        self.misses = 0
        if path is not None:
            p = Path(path)
            if p.is_dir() or (not p.suffix and not p.exists()):
                p.mkdir(parents=True, exist_ok=True)
                p = p / DB_NAME
            p.parent.mkdir(parents=True, exist_ok=True)
            self.path = p
            try:
                self._db = sqlite3.connect(str(p), timeout=30.0, isolation_level=None,
                                           check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
            except sqlite3.DatabaseError as e:
                raise ValueError(f"cannot use {p} as an evaluation cache ({e}); give a new file or a "
                                 "directory, or delete the damaged file") from e

    # -- results -------------------------------------------------------------
    def get(self, key: str, fidelity: str, config: str) -> EvalResult | None:
        """The cached result (a copy with ``cached=True``), or None."""
        k = (key, fidelity, config)
        with self._lock:
            text = self._mem.get(k)
            if text is None and self._db is not None:
                row = self._db.execute("SELECT result FROM results WHERE key=? AND fidelity=? AND config=?",
                                       k).fetchone()
                if row is not None:
                    text = row[0]
                    self._mem[k] = text
            if text is None:
                self.misses += 1
                return None
            self.hits += 1
        res = EvalResult.model_validate_json(text)
        res.cached = True
        return res

    def put(self, result: EvalResult, config: str) -> None:
        """Store one result (replacing an older one with the same key/fidelity/config)."""
        self.put_many([result], config)

    def put_many(self, results: Iterable[EvalResult], config: str) -> None:
        """Store several results in one transaction."""
        rows = []
        for r in results:
            stored = r.model_copy(update={"cached": False})
            rows.append((r.key, r.fidelity, config, stored.model_dump_json(), time.time()))
        if not rows:
            return
        with self._lock:
            for key, fid, cfg, text, _ in rows:
                self._mem[(key, fid, cfg)] = text
            if self._db is not None:
                with self._transaction():
                    self._db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        with self._lock:
            if self._db is not None:
                return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
            return len(self._mem)

    # -- blobs -----------------------------------------------------------------
    def get_blob(self, namespace: str, key: str) -> Any | None:
        """A JSON value stored with :meth:`put_blob`, or None."""
        with self._lock:
            if (namespace, key) in self._blobs:
                return self._blobs[(namespace, key)]
            if self._db is None:
                return None
            row = self._db.execute("SELECT value FROM blobs WHERE namespace=? AND key=?",
                                   (namespace, key)).fetchone()
            if row is None:
                return None
            value = json.loads(row[0])
            self._blobs[(namespace, key)] = value
            return value

    def put_blob(self, namespace: str, key: str, value: Any) -> None:
        """Store a JSON-serializable value."""
        text = json.dumps(value)
        with self._lock:
            self._blobs[(namespace, key)] = json.loads(text)
            if self._db is not None:
                with self._transaction():
                    self._db.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?, ?)",
                                     (namespace, key, text, time.time()))

    # -- plumbing ----------------------------------------------------------------
    def _transaction(self):
        db = self._db

        class _Tx:
            def __enter__(self_inner):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, exc_type, *_):
                db.execute("ROLLBACK" if exc_type else "COMMIT")
        return _Tx()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
