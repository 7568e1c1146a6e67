"""The one error type of the DSL: every refusal names where and what to do instead."""
from __future__ import annotations


class DSLError(ValueError):
    """A program the DSL refuses. ``line``/``col`` are 1-based (0 when unknown)."""

    def __init__(self, message: str, line: int = 0, col: int = 0):
        self.message = message
        self.line = line
        self.col = col
        where = f"line {line}, col {col}: " if line else ""
        super().__init__(where + message)
