"""The LLM interface, defined in ``evaluators.llm`` (the prompt evaluator needs it below ``search``)."""
from evaluators.llm import LLM, ChatRequest, ChatResponse, LLMSetupError, Message

__all__ = ["LLM", "ChatRequest", "ChatResponse", "LLMSetupError", "Message"]
