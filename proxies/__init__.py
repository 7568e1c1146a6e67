"""Proxy tasks: small seeded training tasks for update rules, and prompt tasks.

Rule tasks (``proxies.tasks``): ``get_task(name).sweep(program, lrs, seeds, fidelity)``
trains len(lrs) * len(seeds) model copies in ONE vectorized run and returns a
``SweepOutcome`` (final held-out metric, divergence flags and curves per lr and seed);
``split="test"`` computes them on each task's held-out test split instead of validation;
``wds=`` tunes weight decay in the same run and ``rungs=`` prune the grid (successive halving).
``resolve_task("pkg.mod:factory")`` loads a user's own task (``TaskLoadError`` says what is wrong);
``ModuleTask(name, model, data, loss, ...)`` stacks any ``torch.nn.Module``; ``TASK_GROUPS``
suggests disjoint search / validation / transfer task sets. The sampled task bank names its tasks
``"bank:<family>/<key>=<value>,..."`` (any task argument takes one); ``sample_tasks(families, n, seed)``
draws them and ``split_families`` splits families into search / validation / test banks.

Prompt tasks (``proxies.prompts``): ``get_prompt_task(name)`` -> ``PromptTask`` (train/dev/test
splits in the instruction-induction format), ``load_jsonl_task(path, metric=...)`` for your own.
"""
from .prompts import PromptTask, get_prompt_task, list_prompt_tasks, load_jsonl_task
from .tasks import (
    DEFAULT_SUITE,
    FIDELITIES,
    SPLITS,
    TASK_GROUPS,
    BankSpecError,
    ModuleTask,
    RuleTask,
    Rung,
    StackedTask,
    SweepOutcome,
    TaskDefinitionError,
    TaskLoadError,
    TaskOverlapError,
    UnknownTaskError,
    bank_families,
    bank_family,
    check_disjoint,
    draw_seed,
    get_task,
    is_task_spec,
    list_tasks,
    register_task,
    resolve_task,
    sample_tasks,
    split_families,
    split_task_list,
    task_family,
)

__all__ = ["FIDELITIES", "SPLITS", "SweepOutcome", "Rung", "RuleTask", "StackedTask", "ModuleTask", "get_task",
           "resolve_task", "list_tasks", "register_task", "task_family", "check_disjoint", "is_task_spec",
           "TaskLoadError", "TaskOverlapError", "UnknownTaskError", "TaskDefinitionError", "DEFAULT_SUITE",
           "TASK_GROUPS", "PromptTask", "get_prompt_task", "list_prompt_tasks", "load_jsonl_task",
           "BankSpecError", "bank_families", "bank_family", "draw_seed", "sample_tasks", "split_families",
           "split_task_list"]
