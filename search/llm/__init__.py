"""LLM backends behind one interface."""
from .base import LLM, ChatRequest, ChatResponse, Message

__all__ = ["LLM", "ChatRequest", "ChatResponse", "Message"]
