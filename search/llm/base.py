"""One small LLM interface for every backend (local transformers, OpenAI-compatible, scripted).

Requests are batched: ``chat`` takes a list so a local model can generate them
together and a remote one can send them concurrently. A backend never raises
for a failed request: the response carries ``error`` and the caller falls back.
"""
from __future__ import annotations

import abc
from typing import Literal

from pydantic import BaseModel, Field


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    messages: list[Message]
    temperature: float = 0.7
    max_tokens: int = 256
    stop: list[str] | None = None
    seed: int | None = None
    n: int = 1
    #: Constrain decoding: None, or "dsl" (an update rule in the DSL's grammar), or a Lark grammar text.
    grammar: str | None = None
    #: Free-form tag for accounting/logging ("mutate", "crossover", "task", ...).
    purpose: str = ""


class ChatResponse(BaseModel):
    texts: list[str] = Field(default_factory=list)   # n samples
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


class LLM(abc.ABC):
    """A chat model. Implementations: ``local``, ``openai``, ``scripted``."""

    name: str = "llm"

    @abc.abstractmethod
    def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        """One response per request, in order; failures are reported in ``error``."""

    def logprobs(self, prompts: list[str], completions: list[list[str]]) -> list[list[float]]:
        """Sum log-probability of each completion given its prompt (for label scoring)."""
        raise NotImplementedError(f"backend {self.name} does not support log-probability scoring")
