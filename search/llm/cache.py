"""A request cache on disk (SQLite), so a resumed or repeated campaign does not pay twice.

Key: SHA-256 of the canonical JSON of everything that determines a reply — the
backend's ``identity()`` (backend, endpoint, model), the messages, temperature, top-p,
max_tokens, stop strings, seed, grammar (and grammar names) — plus the **sample index**,
so ``n`` samples are ``n`` entries and asking for several gets several. The request's
``purpose`` tag is not part of the key. Errors are never cached.

``CachedLLM(inner, path, mode)``:

* ``"readwrite"`` (default): hits are served (``cached=True``, latency 0); misses go to
  ``inner`` and are stored. A request with some samples cached asks ``inner`` only for
  the missing range (``sample_offset``/``n``).
* ``"readonly"``: as above but nothing new is stored.
* ``"replay"``: never calls ``inner``; a miss is an error. This replays a campaign made
  with a real LLM from its recorded replies: run it again with the same ``[llm]`` table
  and ``cache = "replay"`` (the backend is not loaded).

Log-probabilities are cached too, per (prompt, completion) pair.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from .base import LLM, ChatRequest, ChatResponse

MODES = ("readwrite", "readonly", "replay")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY, text TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER,
    request TEXT, sample_index INTEGER, created REAL);
CREATE TABLE IF NOT EXISTS logprobs (key TEXT PRIMARY KEY, value REAL NOT NULL, created REAL);
"""


def _canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_payload(rq: ChatRequest) -> dict:
    """The part of a request that determines its replies (everything but purpose/n/offset)."""
    return {"messages": [[m.role, m.content] for m in rq.messages], "temperature": rq.temperature,
            "top_p": rq.top_p, "max_tokens": rq.max_tokens, "stop": rq.stop, "seed": rq.seed,
            "grammar": rq.grammar, "grammar_names": rq.grammar_names}


def request_key(identity: dict, rq: ChatRequest, index: int) -> str:
    """Cache key of sample ``index`` (absolute, counting from 0) of request ``rq``."""
    return hashlib.sha256(_canon({"v": 1, "id": identity, "rq": request_payload(rq),
                                  "i": int(index)}).encode()).hexdigest()


def logprob_key(identity: dict, prompt: str, completion: str) -> str:
    return hashlib.sha256(_canon({"v": 1, "id": identity, "lp": [prompt, completion]}).encode()).hexdigest()


class CachedLLM(LLM):
    """See the module docstring. ``path``: a SQLite file, or a folder (``llm_cache.sqlite`` in it)."""

    def __init__(self, inner: LLM, path: str | Path, mode: str = "readwrite"):
        if mode not in MODES:
            raise ValueError(f"cache mode {mode!r} is not one of {', '.join(MODES)}")
        p = Path(path)
        if p.is_dir() or p.suffix == "":
            p.mkdir(parents=True, exist_ok=True)
            p = p / "llm_cache.sqlite"
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
        self.inner, self.path, self.mode = inner, p, mode
        self.name = inner.name
        self._id = inner.identity()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(p), timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self.hits = self.misses = 0

    def identity(self) -> dict:
        return self._id

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        self.inner.close()

    def _get(self, keys: list[str]) -> dict[str, tuple]:
        if not keys:
            return {}
        out = {}
        with self._lock:
            for k0 in range(0, len(keys), 500):
                chunk = keys[k0:k0 + 500]
                q = f"SELECT key, text, prompt_tokens, completion_tokens FROM replies WHERE key IN " \
                    f"({','.join('?' * len(chunk))})"
                for row in self._db.execute(q, chunk):
                    out[row[0]] = row[1:]
        return out

    def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        keys = [[request_key(self._id, rq, rq.sample_offset + k) for k in range(rq.n)] for rq in requests]
        found = self._get([k for ks in keys for k in ks])
        out: list[ChatResponse | None] = [None] * len(requests)
        todo: list[tuple[int, int, int]] = []   # (request position, first missing k, last missing k)
        for i, (rq, ks) in enumerate(zip(requests, keys)):
            miss = [k for k, key in enumerate(ks) if key not in found]
            if not miss:
                rows = [found[key] for key in ks]
                out[i] = ChatResponse(texts=[r[0] for r in rows], prompt_tokens=rows[0][1] or 0,
                                      completion_tokens=sum(r[2] or 0 for r in rows), cached=True)
            elif self.mode == "replay":
                out[i] = ChatResponse(error="not in the replay cache: this request was never made in the "
                                            f"recorded run ({len(miss)}/{rq.n} samples missing)")
            else:
                todo.append((i, miss[0], miss[-1]))
        self.hits += sum(1 for r in out if r is not None and r.cached)
        self.misses += len(todo)
        usage = self.usage
        if usage is not None:
            for rq, r in zip(requests, out):
                if r is not None and r.cached:
                    usage.add(rq.purpose, cached_calls=1, samples=len(r.texts))
        if todo:
            sub = [requests[i].model_copy(update={"sample_offset": requests[i].sample_offset + a, "n": b - a + 1})
                   for i, a, b in todo]
            try:
                replies = self.inner.chat(sub)
            except Exception as e:  # noqa: BLE001 - never raise into the campaign
                replies = [ChatResponse(error=f"backend raised {type(e).__name__}: {e}") for _ in sub]
            rows_to_store = []
            for (i, a, b), srq, rs in zip(todo, sub, replies):
                rq = requests[i]
                if rs.error is None and len(rs.texts) == srq.n:
                    per = rs.completion_tokens // max(1, srq.n)
                    extra = rs.completion_tokens - per * srq.n
                    for k, text in enumerate(rs.texts):
                        rows_to_store.append((keys[i][a + k], text, rs.prompt_tokens, per + (extra if k == 0 else 0),
                                              _canon(request_payload(rq)), rq.sample_offset + a + k, time.time()))
                if a == 0 and b == rq.n - 1:
                    out[i] = rs
                    continue
                # merge cached and new samples, in sample order
                texts, new_iter = [], iter(rs.texts)
                for k, key in enumerate(keys[i]):
                    if a <= k <= b:
                        texts.append(next(new_iter, ""))
                    else:
                        texts.append(found[key][0])
                out[i] = rs.model_copy(update={"texts": texts if rs.error is None else rs.texts})
            if rows_to_store and self.mode == "readwrite":
                with self._lock:
                    self._db.executemany("INSERT OR REPLACE INTO replies VALUES (?,?,?,?,?,?,?)", rows_to_store)
                    self._db.commit()
        return out  # type: ignore[return-value]

    def logprobs(self, prompts: list[str], completions: list[list[str]]) -> list[list[float]]:
        keys = [[logprob_key(self._id, p, c) for c in cs] for p, cs in zip(prompts, completions)]
        flat = [k for ks in keys for k in ks]
        found: dict[str, float] = {}
        with self._lock:
            for k0 in range(0, len(flat), 500):
                chunk = flat[k0:k0 + 500]
                q = f"SELECT key, value FROM logprobs WHERE key IN ({','.join('?' * len(chunk))})"
                found.update(dict(self._db.execute(q, chunk).fetchall()))
        need = [i for i, ks in enumerate(keys) if any(k not in found for k in ks)]
        if need:
            if self.mode == "replay":
                raise KeyError("log-probabilities not in the replay cache: this scoring was never done in the "
                               "recorded run")
            vals = self.inner.logprobs([prompts[i] for i in need], [completions[i] for i in need])
            rows = []
            for i, vs in zip(need, vals):
                for k, v in zip(keys[i], vs):
                    found[k] = float(v)
                    rows.append((k, float(v), time.time()))
            if self.mode == "readwrite":
                with self._lock:
                    self._db.executemany("INSERT OR REPLACE INTO logprobs VALUES (?,?,?)", rows)
                    self._db.commit()
        return [[found[k] for k in ks] for ks in keys]
