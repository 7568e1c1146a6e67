"""Search: the evolutionary engine, its candidate kinds, LLM backends, reports and the CLI.

Subpackages (imports run one way: ``cli`` -> ``report`` / ``rules`` / ``prompts`` -> ``core`` -> ``llm``;
below them ``evaluators`` -> ``proxies`` -> ``dsl``):

- ``core``: candidate and result types, the plug-in contracts (kind, operator, strategy) and their
  registries, the loop (``Engine``), checkpoints, campaigns, the run store, the built-in strategies;
- ``rules``: the ``rule`` kind (DSL update rules), random mutations, LLM operators for rules, the
  rule's empirical simplification tries;
- ``prompts``: the ``prompt`` kind, its operators and strategies (EvoPrompt, OPRO), the test-split
  selection and its statistics, run comparison;
- ``llm``: LLM backends (embedded, OpenAI-compatible, scripted), request cache, accounting, grammar;
- ``report``: the HTML report, its figures and the live view;
- ``cli``: the ``optforge`` command, one module per verb group.

The names most code needs are re-exported here from ``search.core``.
"""
from .core import (
                   KINDS,
                   OPERATORS,
                   STRATEGIES,
                   Campaign,
                   CampaignError,
                   Context,
                   Engine,
                   Individual,
                   InvalidCandidate,
                   Job,
                   KindPlugin,
                   Operator,
                   Proposal,
                   RunStore,
                   RunView,
                   Strategy,
                   get_kind,
                   load_campaign,
                   parse_campaign,
                   register_kind,
                   register_operator,
                   register_strategy,
                   run_campaign,
)

__all__ = ["KINDS", "OPERATORS", "STRATEGIES", "Campaign", "CampaignError", "Context", "Engine", "Individual",
           "InvalidCandidate", "Job", "KindPlugin", "Operator", "Proposal", "RunStore", "RunView", "Strategy",
           "get_kind", "load_campaign", "parse_campaign", "register_kind", "register_operator",
           "register_strategy", "run_campaign"]
