"""Proxy tasks: small seeded training tasks for update rules, and prompt tasks.

Rule tasks (``proxies.tasks``): ``get_task(name).sweep(program, lrs, seeds, fidelity)``
trains len(lrs) * len(seeds) model copies in ONE vectorized run and returns a
``SweepOutcome`` (final held-out metric, divergence flags and curves per lr and seed);
``split="test"`` computes them on each task's held-out test split instead of validation.

Prompt tasks (``proxies.prompts``): ``get_prompt_task(name)`` -> ``PromptTask`` (train/dev/test
splits in the instruction-induction format), ``load_jsonl_task(path, metric=...)`` for your own.
"""
from .prompts import PromptTask, get_prompt_task, list_prompt_tasks, load_jsonl_task
from .tasks import (DEFAULT_SUITE, FIDELITIES, SPLITS, RuleTask, StackedTask, SweepOutcome, get_task,
                    list_tasks)

__all__ = ["FIDELITIES", "SPLITS", "SweepOutcome", "RuleTask", "StackedTask", "get_task", "list_tasks",
           "DEFAULT_SUITE", "PromptTask", "get_prompt_task", "list_prompt_tasks", "load_jsonl_task"]
