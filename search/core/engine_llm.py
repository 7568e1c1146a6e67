"""The engine's LLM gate: one place where the search talks to its LLM backend.

A part of :class:`search.core.Engine` (a mixin, split out of the loop for size). The backend is
built lazily from the campaign's ``[llm]`` table; a backend that cannot be built, the
``budget.llm_calls`` cap, the backend's own spent budget or repeated errors stop LLM use (never
the campaign: random operators take over). Every call is recorded in the run store; a pipelined
plan's first pass only captures its requests (search.core.pipeline).
"""
from __future__ import annotations

from typing import Any

from search.llm import LLMConfig, LLMUsage, make_llm


class LLMGate:
    """LLM access of the engine (uses ``campaign``, ``store``, ``stats``, ``event``, ``run_dir``,
    ``next_id``, ``capture``, ``prefetch``, ``resumed_llm_usage`` and the ``_llm*`` / ``llm_*``
    fields Engine.__init__ sets)."""

    @property
    def llm(self):
        if not self._llm_init_done:
            self._llm_init_done = True
            try:
                cfg = LLMConfig.model_validate(self.campaign.llm or {})
                usage = None
                if self.resumed_llm_usage is not None:  # totals of the run so far: the backend's caps span resumes
                    usage = LLMUsage.model_validate(self.resumed_llm_usage)
                self._llm = make_llm(cfg, cache_dir=self.run_dir / "llm_cache", usage=usage, check=True)
            except Exception as e:  # the campaign goes on with random operators
                self._llm = None
                self.llm_disabled_reason = (f"LLM backend unavailable ({type(e).__name__}: {e}); "
                                            "continuing with random operators only")
                self.event("llm_disabled", self.llm_disabled_reason)
        return self._llm

    def llm_available(self) -> bool:
        if self.llm_disabled_reason:
            return False
        cap = self.campaign.budget.llm_calls
        if cap is not None and self.llm_calls >= cap:
            self.llm_disabled_reason = f"LLM call budget spent ({cap} calls)"
            self.event("llm_disabled", self.llm_disabled_reason)
            return False
        return self.llm is not None

    def llm_state(self) -> dict[str, Any]:
        """The LLM part of a checkpoint: why LLM use stopped (once the backend was built; a backend
        not built yet is tried again on resume) and the usage totals so far (None without any)."""
        usage = self._llm.usage if self._llm_init_done and self._llm is not None else None
        return {"llm_disabled_reason": self.llm_disabled_reason if self._llm_init_done else "",
                "llm_usage": usage.model_dump(mode="json") if usage is not None else self.resumed_llm_usage}

    def llm_chat(self, requests: list, purpose: str = "") -> list | None:
        if not requests or not self.llm_available():
            return None
        cap = self.campaign.budget.llm_calls
        if cap is not None:
            requests = requests[: max(0, cap - self.llm_calls - len(self.capture or ()))]
        if self.capture is not None:   # a pipelined plan's first pass: sent later, in the background
            self.capture.extend(requests)
            return None
        try:
            responses = self.prefetch.answer(requests) if self.prefetch else self.llm.chat(requests)
        except Exception as e:  # a backend must not raise, but never crash the campaign
            responses = None
            err = f"{type(e).__name__}: {e}"
        self.llm_calls += len(requests)
        if responses is None or len(responses) != len(requests):
            err = err if responses is None else f"backend returned {len(responses)} replies for {len(requests)}"
            self.stats.llm_errors += len(requests)
            self._llm_error(err)
            return None
        any_ok = False
        for rq, rs in zip(requests, responses):
            self.store.add_llm_call(candidate_id=self.next_id, purpose=purpose or rq.purpose,
                                    request=rq.model_dump_json(), reply=rs.text if not rs.error else None,
                                    error=rs.error, tokens=rs.prompt_tokens + rs.completion_tokens,
                                    latency_s=rs.latency_s, cached=rs.cached)
            if rs.error:
                self.stats.llm_errors += 1
            else:
                any_ok = True
        if any_ok:
            self.llm_consecutive_errors = 0
        else:
            self._llm_error(responses[0].error or "empty replies", budget_spent=responses[0].budget_spent)
        return responses

    def _llm_error(self, err: str, budget_spent: bool = False) -> None:
        self.llm_consecutive_errors += 1
        self.event("llm_error", err)
        if budget_spent:   # the backend's own cap (search.llm accounting: ChatResponse.budget_spent)
            self.llm_disabled_reason = f"LLM backend's budget is spent ({err}); continuing with random operators"
            self.event("llm_disabled", self.llm_disabled_reason)
        elif self.llm_consecutive_errors >= self.campaign.llm_ops.max_consecutive_errors:
            self.llm_disabled_reason = (f"LLM backend failed {self.llm_consecutive_errors} times in a row "
                                        f"(last: {err}); continuing with random operators")
            self.event("llm_disabled", self.llm_disabled_reason)
