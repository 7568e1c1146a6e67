"""Token, call, latency and cost accounting, with a hard cap that stops LLM use (not the campaign).

``BudgetedLLM(inner, caps)`` wraps any backend. Every response gets its ``cost``
(``prompt_tokens * price_prompt + completion_tokens * price_completion``, prices per 1000
tokens); totals (overall and per ``purpose``) accumulate in an :class:`LLMUsage`, a
pydantic model that can be saved with a run and passed back on resume.

Caps (any of calls, tokens, cost) are checked before each request: once one is reached,
requests come back at once with ``budget_spent = True`` and ``error = "LLM budget exhausted
(...)"``, and the backend is not called. A call cap is exact (a batch is cut at the remaining
number of calls); a token or cost cap can be overshot by the batch in flight, since a reply's size is known
only afterwards. Cached replies (``cached=True``) are counted apart and are free: put the
cache outside the budget, ``CachedLLM(BudgetedLLM(backend))``, so a resumed campaign
replays its past calls without spending the cap again (that is what ``make_llm`` builds).
"""
from __future__ import annotations

import threading

from pydantic import BaseModel, Field

from .base import LLM, ChatRequest, ChatResponse

EXHAUSTED = "LLM budget exhausted"


class LLMBudgetExhausted(RuntimeError):
    """Raised by ``BudgetedLLM.logprobs`` once a cap is reached (``chat`` reports it per response)."""


class UsageTotals(BaseModel):
    calls: int = 0                 # requests sent to the backend (one per request, whatever n)
    samples: int = 0               # texts returned
    failed_calls: int = 0          # requests whose response carried an error (backend or budget)
    refused_calls: int = 0         # requests refused because a cap was reached
    cached_calls: int = 0          # requests served from the cache (free)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0         # sum of per-request latencies
    cost: float = 0.0
    logprob_calls: int = 0         # logprobs() invocations
    logprob_pairs: int = 0         # (prompt, completion) pairs scored

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class LLMUsage(UsageTotals):
    """Totals for the whole run plus a breakdown by request ``purpose``."""
    by_purpose: dict[str, UsageTotals] = Field(default_factory=dict)

    def add(self, purpose: str, **delta) -> None:
        for tgt in (self, self.by_purpose.setdefault(purpose or "", UsageTotals())):
            for k, v in delta.items():
                setattr(tgt, k, getattr(tgt, k) + v)

    def summary(self) -> str:
        return (f"{self.calls} calls ({self.cached_calls} cached, {self.failed_calls} failed), "
                f"{self.prompt_tokens}+{self.completion_tokens} tokens, {self.latency_s:.1f} s, "
                f"cost {self.cost:.4f}")


class LLMCaps(BaseModel):
    """Hard limits on LLM use; None means no limit."""
    max_calls: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    max_cost: float | None = Field(None, ge=0)


class BudgetedLLM(LLM):
    """Accounting and caps around any backend (see the module docstring)."""

    def __init__(self, inner: LLM, caps: LLMCaps | None = None, *, price_per_1k_prompt: float = 0.0,
                 price_per_1k_completion: float = 0.0, usage: LLMUsage | None = None):
        self.inner = inner
        self.name = inner.name
        self.caps = caps or LLMCaps()
        self.price_prompt = float(price_per_1k_prompt) / 1000.0
        self.price_completion = float(price_per_1k_completion) / 1000.0
        self._usage = usage if usage is not None else LLMUsage()
        self._lock = threading.Lock()

    @property
    def usage(self) -> LLMUsage:
        return self._usage

    def identity(self) -> dict:
        return self.inner.identity()

    def exhausted(self) -> str | None:
        """Which cap is reached, or None."""
        u, c = self._usage, self.caps
        if c.max_calls is not None and u.calls >= c.max_calls:
            return f"{u.calls} calls >= max_calls {c.max_calls}"
        if c.max_tokens is not None and u.tokens >= c.max_tokens:
            return f"{u.tokens} tokens >= max_tokens {c.max_tokens}"
        if c.max_cost is not None and u.cost >= c.max_cost:
            return f"cost {u.cost:.4f} >= max_cost {c.max_cost}"
        return None

    def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        with self._lock:
            why = self.exhausted()
            allowed = 0 if why else len(requests)
            if not why and self.caps.max_calls is not None:
                allowed = min(allowed, self.caps.max_calls - self._usage.calls)
                if allowed < len(requests):
                    why = f"max_calls {self.caps.max_calls} reached within this batch"
        sent = requests[:allowed]
        try:
            replies = self.inner.chat(sent) if sent else []
        except Exception as e:  # noqa: BLE001 - a backend that raises still must not crash the campaign
            replies = [ChatResponse(error=f"backend raised {type(e).__name__}: {e}") for _ in sent]
        if len(replies) != len(sent):
            replies = [ChatResponse(error=f"backend returned {len(replies)} responses for {len(sent)} "
                                          "requests")] * len(sent)
        out = []
        with self._lock:
            for rq, rs in zip(sent, replies):
                rs = rs.model_copy()
                rs.cost = 0.0 if rs.cached else (rs.prompt_tokens * self.price_prompt
                                                 + rs.completion_tokens * self.price_completion)
                if rs.cached:
                    self._usage.add(rq.purpose, cached_calls=1, samples=len(rs.texts))
                else:
                    self._usage.add(rq.purpose, calls=1, samples=len(rs.texts),
                                    failed_calls=int(rs.error is not None), prompt_tokens=rs.prompt_tokens,
                                    completion_tokens=rs.completion_tokens, latency_s=rs.latency_s,
                                    cost=rs.cost)
                out.append(rs)
            for rq in requests[allowed:]:
                self._usage.add(rq.purpose, refused_calls=1, failed_calls=1)
                out.append(ChatResponse(error=f"{EXHAUSTED} ({why})", budget_spent=True))
        return out

    def logprobs(self, prompts: list[str], completions: list[list[str]]) -> list[list[float]]:
        with self._lock:
            why = self.exhausted()
        if why:
            raise LLMBudgetExhausted(f"{EXHAUSTED} ({why})")
        out = self.inner.logprobs(prompts, completions)
        with self._lock:
            self._usage.add("logprobs", logprob_calls=1, logprob_pairs=sum(len(c) for c in completions))
        return out
