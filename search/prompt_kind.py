"""Registers the "prompt" candidate kind (engine.KIND_MODULES points here); see search.prompt_campaign."""
from .prompt_campaign import PromptKind, PromptOptions, finalize_prompt_run  # noqa: F401  (registers)

__all__ = ["PromptKind", "PromptOptions", "finalize_prompt_run"]
