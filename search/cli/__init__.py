"""The ``optforge`` command line: one module per verb group.

- ``rule``: ``optforge rule check | simplify | export | list`` (the DSL from the shell);
- ``eval``: ``optforge eval RULE`` (score one rule against tuned AdamW);
- ``llm``: ``optforge llm ping | serve`` (check or serve an LLM backend);
- ``run``: ``optforge run CAMPAIGN.toml`` (run or resume a campaign);
- ``results``: ``optforge show | export | report RUN`` (read a run);
- ``main``: the parser (``build_parser``) and the entry point ``main`` (the console script
  ``optforge = search.cli:main``; ``python -m search.cli`` runs it too).
"""
from .main import build_parser, main

__all__ = ["build_parser", "main"]
