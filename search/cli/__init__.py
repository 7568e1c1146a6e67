"""The ``optforge`` command line: one module per verb group.

- ``rule``: ``optforge rule check | simplify | export | list`` (the DSL from the shell);
- ``eval``: ``optforge eval RULE`` (score one rule against tuned AdamW);
- ``llm``: ``optforge llm ping | serve`` (check or serve an LLM backend);
- ``run``: ``optforge run CAMPAIGN.toml`` (run or resume a campaign);
- ``results``: ``optforge show | export | report RUN`` (read a run);
- ``verify``: ``optforge verify RUN`` (re-score the top rules on test splits, unseen seeds and
  transfer tasks); ``transfer``: the lines ``show`` prints for validation and verification;
- ``check``: ``optforge check CAMPAIGN.toml`` (validate a campaign file without running it);
- ``rundata``: a run as records and JSON (``show --json`` and the notebook API ``search.api``);
- ``errors``: ``CLIError``, the one error path (a message that says what to fix, exit status 1);
- ``main``: the parser (``build_parser``) and the entry point ``main`` (the console script
  ``optforge = search.cli:main``; ``python -m search.cli`` runs it too, through ``__main__``).
"""
from .errors import CLIError
from .main import build_parser, main
from .results import export_candidate, show_text
from .rundata import candidate_records, evaluation_records, operator_records, run_json, verify_records

__all__ = ["build_parser", "main", "CLIError", "export_candidate", "show_text", "candidate_records",
           "evaluation_records", "operator_records", "run_json", "verify_records"]
