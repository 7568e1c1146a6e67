"""Deterministic replies for tests and reproducible demos.

Replies come from a list (cycled in call order), a dict keyed by the request's
``purpose`` (``"*"`` is the fallback), a function, or a file:

* ``.json``: a list of strings, or an object ``{purpose: [strings]}`` (``"*"`` fallback);
* ``.jsonl``: one reply per line, each a JSON string or ``{"text": ..., "purpose": ...}``.

A function gets ``(request)`` or ``(request, sample_index)`` and returns the reply text
(raising is recorded as the request's error, like any backend failure).

Replay of a real campaign needs no scripted backend: the request cache
(``search.llm.cache``) holds every reply keyed by the whole request and the backend's
identity; open it with ``mode="replay"`` and the same config and every request is served
from it, with an error for any request that was never made.
"""
from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .base import LLM, ChatRequest, ChatResponse, LLMSetupError

ReplyFn = Callable[..., str]
Source = list | dict | ReplyFn | str | Path


def load_replies(path: str | Path) -> list[str] | dict[str, list[str]]:
    """Read a replies file (see the module docstring); LLMSetupError with the reason if bad."""
    p = Path(path)
    if not p.is_file():
        raise LLMSetupError(f"scripted replies file {str(p)!r} does not exist: set llm.replies to a .json or "
                            ".jsonl file of replies")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".jsonl":
            by: dict[str, list[str]] = {}
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                item = json.loads(line)
                if isinstance(item, str):
                    by.setdefault("*", []).append(item)
                elif isinstance(item, dict) and isinstance(item.get("text"), str):
                    by.setdefault(str(item.get("purpose") or "*"), []).append(item["text"])
                else:
                    raise ValueError(f"line {n}: expected a JSON string or {{\"text\": ...}}")
            return by.get("*", []) if set(by) <= {"*"} else by
        data = json.loads(text)
    except (json.JSONDecodeError, ValueError) as e:
        raise LLMSetupError(f"scripted replies file {str(p)!r} is not valid: {e}") from None
    if isinstance(data, list) and all(isinstance(x, str) for x in data):
        return data
    if isinstance(data, dict) and all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                                      for v in data.values()):
        return data
    raise LLMSetupError(f"scripted replies file {str(p)!r}: expected a list of strings or an object of "
                        "purpose -> list of strings")


class ScriptedLLM(LLM):
    """Replies from a list / dict / function / file (see the module docstring)."""

    name = "scripted"

    def __init__(self, replies: Source, *, latency_s: float = 0.0,
                 logprob_fn: Callable[[str, str], float] | None = None):
        if isinstance(replies, (str, Path)):
            self.source_name = f"file:{Path(replies).resolve()}"
            replies = load_replies(replies)
        elif callable(replies):
            self.source_name = f"function:{getattr(replies, '__module__', '?')}." \
                               f"{getattr(replies, '__qualname__', type(replies).__name__)}"
        else:
            try:
                digest = hashlib.sha256(json.dumps(replies, sort_keys=True).encode()).hexdigest()[:16]
            except TypeError:
                digest = "?"
            self.source_name = f"inline:{digest}"
        self._fn: ReplyFn | None = None
        self._cycles: dict[str, itertools.cycle] = {}
        if callable(replies):
            self._fn = replies
            try:
                self._fn_arity = len([p for p in inspect.signature(replies).parameters.values()
                                      if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                                             p.POSITIONAL_OR_KEYWORD)])
            except (TypeError, ValueError):
                self._fn_arity = 1
        elif isinstance(replies, list):
            if not replies:
                raise LLMSetupError("scripted backend: the list of replies is empty")
            self._cycles["*"] = itertools.cycle(list(replies))
        elif isinstance(replies, dict):
            for k, v in replies.items():
                if not v:
                    raise LLMSetupError(f"scripted backend: no replies for purpose {k!r}")
                self._cycles[str(k)] = itertools.cycle(list(v))
        else:
            raise LLMSetupError(f"scripted backend: replies must be a list, dict, function or file, got "
                                f"{type(replies).__name__}")
        self.latency_s = latency_s
        self.logprob_fn = logprob_fn
        self.calls = 0
        self._lock = threading.Lock()

    def grammar_support(self) -> str | None:
        return None     # the reply function gets the grammar (tests script what a constrained model writes)

    def identity(self) -> dict:
        return {"backend": "scripted", "source": self.source_name}

    def _reply(self, rq: ChatRequest, index: int) -> str:
        if self._fn is not None:
            out = self._fn(rq) if self._fn_arity < 2 else self._fn(rq, index)
            if not isinstance(out, str):
                raise TypeError(f"the reply function returned {type(out).__name__}, not str")
            return out
        cyc = self._cycles.get(rq.purpose) or self._cycles.get("*")
        if cyc is None:
            raise KeyError(f"no scripted replies for purpose {rq.purpose!r} (and no '*' fallback)")
        return next(cyc)

    def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        out = []
        for rq in requests:
            t0 = time.perf_counter()
            if self.latency_s:
                time.sleep(self.latency_s)
            texts, err = [], None
            with self._lock:
                self.calls += 1
                try:
                    for k in range(rq.n):
                        t = self._reply(rq, rq.sample_offset + k)
                        for s in rq.stop or []:
                            if s and s in t:
                                t = t[: t.index(s)]
                        texts.append(t)
                except Exception as e:  # noqa: BLE001 - recorded, as for any backend
                    texts, err = [], f"scripted reply failed: {type(e).__name__}: {e}"
            prompt = sum(len(m.content.split()) for m in rq.messages)  # word counts stand in for tokens
            out.append(ChatResponse(texts=texts, prompt_tokens=prompt,
                                    completion_tokens=sum(len(t.split()) for t in texts),
                                    latency_s=time.perf_counter() - t0, error=err))
        return out

    def logprobs(self, prompts: list[str], completions: list[list[str]]) -> list[list[float]]:
        if self.logprob_fn is None:
            return super().logprobs(prompts, completions)
        return [[float(self.logprob_fn(p, c)) for c in cs] for p, cs in zip(prompts, completions)]
