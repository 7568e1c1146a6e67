"""The ``rule`` candidate kind: DSL update rules, their operators and their simplification tries.

- ``kind``: ``RuleKind`` (seeds from the rule library or files, ``dsl.parse`` as the gate,
  the evaluator, export as a standalone torch optimizer) and ``moves_without_lr``;
- ``mutations``: the random mutation operators (insert, delete, replace_fn, ...);
- ``llm_ops``: the LLM operators for rules (``llm_mutate``, ``llm_crossover``) and their prompts;
- ``ablations``: the empirical simplification tries of a rule (``RuleKind.ablations``);
- ``tasksets``: a rule campaign's task sets (search, validation, transfer) and default tuning;
- ``verify``: ``optforge verify RUN`` (the winners re-scored where nothing selected them).

Importing the package registers the kind and its operators (``search.core.registry``).
"""
from .ablations import rule_ablations
from .kind import RuleKind, moves_without_lr, rule_text
from .llm_ops import LLMRuleOperator, build_prompt, extract_candidates, extract_program
from .mutations import DEFAULT_WEIGHTS, MUTATIONS, RandomMutation, mutate, perturb
from .tasksets import TUNING_DEFAULTS
from .verify import VerifyError, baseline_name, verdict, verify_json, verify_run, verify_table

__all__ = ["rule_ablations", "RuleKind", "moves_without_lr", "rule_text", "LLMRuleOperator", "build_prompt",
           "extract_candidates", "extract_program", "DEFAULT_WEIGHTS", "MUTATIONS", "RandomMutation", "mutate",
           "perturb", "VerifyError", "verdict", "verify_run", "verify_table", "TUNING_DEFAULTS",
           "verify_json", "baseline_name"]
