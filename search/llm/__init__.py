"""LLM backends behind one interface: ``make_llm(LLMConfig(...), cache_dir=...)`` -> ``LLM``.

Backends: ``local`` (embedded transformers model, the default), ``openai`` (any
OpenAI-compatible endpoint), ``scripted`` (replies from a file or function). Wrappers:
``CachedLLM`` (SQLite request cache, replay) and ``BudgetedLLM`` (usage, cost, caps).
Heavy modules (transformers, openai) are imported only when a backend is built.

``base``: the interface (defined in ``evaluators.llm``, re-exported); ``factory``: ``LLMConfig``
and ``make_llm``; ``local`` (generation) and ``local_model`` (finding and loading the embedded
GGUF model); ``constrain``: per-row grammar masks, seeded sampling and stops for ``generate``;
``grammar``: the DSL as a Lark grammar; ``openai_backend``; ``scripted``; ``cache``;
``accounting``; ``server``: an OpenAI-compatible HTTP server in front of any backend.
"""
from .accounting import EXHAUSTED, BudgetedLLM, LLMBudgetExhausted, LLMCaps, LLMUsage, UsageTotals
from .base import LLM, ChatRequest, ChatResponse, LLMSetupError, Message
from .cache import CachedLLM, request_key
from .factory import LLMConfig, make_backend, make_llm
from .grammar import EXTRA_TEMPS, dsl_grammar_names, dsl_lark_grammar, grammar_supports
from .scripted import ScriptedLLM
from .server import OpenAICompatServer

__all__ = ["LLM", "ChatRequest", "ChatResponse", "Message", "LLMSetupError", "LLMConfig", "make_llm", "make_backend",
           "CachedLLM", "request_key", "BudgetedLLM", "LLMCaps", "LLMUsage", "UsageTotals", "LLMBudgetExhausted",
           "EXHAUSTED", "ScriptedLLM", "dsl_grammar_names", "dsl_lark_grammar", "EXTRA_TEMPS", "OpenAICompatServer",
           "grammar_supports"]
