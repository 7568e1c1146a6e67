"""One small LLM interface for every backend (local transformers, OpenAI-compatible, scripted).

It lives below ``search`` because the prompt evaluator calls a task model through it; the
backends themselves live in ``search.llm``, which re-exports these names.

Requests are batched: ``chat`` takes a list so a local model can generate them
together and a remote one can send them concurrently. A backend never raises
for a failed request: the response carries ``error`` and the caller falls back.
"""
from __future__ import annotations

import abc
from typing import Literal

from pydantic import BaseModel, Field


class LLMSetupError(RuntimeError):
    """A backend that cannot start (missing model file, bad endpoint, missing key, bad config).

    Raised at start-up only (``make_llm``, a backend's constructor or ``check()``), never from
    ``chat``; the message names what to install or set.
    """


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    messages: list[Message]
    temperature: float = 0.7
    max_tokens: int = 256
    stop: list[str] | None = None
    #: Sample i (counting from ``sample_offset``) is drawn with seed ``seed + i`` (None: seed 0 locally).
    seed: int | None = None
    n: int = 1
    #: Nucleus sampling: keep the smallest set of tokens whose probability reaches ``top_p``.
    top_p: float = 1.0
    #: Index of the first sample: ``n=4, sample_offset=4`` asks for samples 4..7 of the same request
    #: (different from samples 0..3, and each cached apart).
    sample_offset: int = 0
    #: Constrain decoding: None, or "dsl" (an update rule in the DSL's grammar), or a Lark grammar text.
    grammar: str | None = None
    #: For ``grammar="dsl"``: the parent's signature entries in def-line order ("w", "m", "lr",
    #: "beta1=0.9": an entry with "=" is a hyperparameter), then temporaries "name:tensor" or
    #: "name:scalar". Build it with ``search.llm.grammar.dsl_grammar_names(program)``. None: an
    #: AdamW-shaped signature.
    grammar_names: list[str] | None = None
    #: Free-form tag for accounting/logging ("mutate", "crossover", "task", ...).
    purpose: str = ""


class ChatResponse(BaseModel):
    texts: list[str] = Field(default_factory=list)   # n samples
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None
    #: Price of this call (set by the accounting wrapper when a price per token is configured).
    cost: float = 0.0
    #: The accounting wrapper refused the request because a cap (calls, tokens, cost) is reached
    #: (``error`` says which); the caller stops using the LLM instead of retrying.
    budget_spent: bool = False

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


class LLM(abc.ABC):
    """A chat model. Implementations: ``local``, ``openai``, ``scripted``."""

    name: str = "llm"
    #: the backend a wrapper (cache, accounting) forwards to; None for a backend itself
    inner: LLM | None = None

    @abc.abstractmethod
    def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        """One response per request, in order; failures are reported in ``error``."""

    def logprobs(self, prompts: list[str], completions: list[list[str]]) -> list[list[float]]:
        """Sum log-probability of each completion given its prompt (for label scoring)."""
        raise NotImplementedError(f"backend {self.name} does not support log-probability scoring")

    # -- optional hooks (wrappers forward them to the backend they wrap) -------------------
    def render_chat(self, messages: list[Message]) -> str | None:
        """The text the model reads for ``messages`` (its chat template, the assistant turn
        opened) when the backend knows it (local models), for ``logprobs``; None otherwise."""
        return self.inner.render_chat(messages) if self.inner is not None else None

    def scores_tokens(self) -> bool:
        """Whether ``token_logprobs`` works (a local model: every token's log-probability)."""
        return self.inner.scores_tokens() if self.inner is not None else False

    def token_logprobs(self, texts: list[str]) -> list[tuple[list[str], list[float | None], list[int]]]:
        """Per text: its tokens, each token's log-probability (None for the first), their offsets."""
        if self.inner is not None:
            return self.inner.token_logprobs(texts)
        raise NotImplementedError(f"backend {self.name} cannot score tokens")

    def grammar_support(self) -> str | None:
        """None when ``chat`` decodes under a request's ``grammar``, else why it cannot (a backend
        that ignored a grammar would hand back unconstrained text as if it were constrained)."""
        if self.inner is not None:
            return self.inner.grammar_support()
        return f"its backend {self.name!r} does not constrain decoding"

    def identity(self) -> dict:
        """What makes this backend's replies what they are (backend, endpoint, model): part of
        every cache key, so a cache never serves one model's replies for another's."""
        return {"backend": self.name}

    @property
    def usage(self):
        """Token/call/cost totals (``search.llm.accounting.LLMUsage``) when an accounting wrapper
        is in the stack, else None."""
        return self.inner.usage if self.inner is not None else None

    def close(self) -> None:
        """Release connections, thread pools and files (idempotent)."""
        if self.inner is not None:
            self.inner.close()
