"""Prompt tasks (instruction-induction format): generated tasks, user JSONL tasks, normalization,
few-shot candidates (instruction + train demonstrations).

``core``: ``PromptTask`` and ``Example``, the query format, answer normalization and metrics;
``generated``: the project's own seeded tasks; ``user``: a task from a JSONL file; ``demos``:
candidates as instruction + train-split demonstrations (encode, decode, edit, cross over);
``words``: the small word lists the generators draw from.
"""
from .core import METRICS, Example, PromptTask, first_line, format_query, match, normalize
from .demos import (
    DEMO_EDITS,
    PLACEMENTS,
    check_demos,
    crossover_demos,
    decode_prompt,
    edit_demos,
    encode_prompt,
    instruction_of,
    render_messages,
    sample_demos,
    with_instruction,
)
from .generated import DEFAULT_SIZES, SPECS, generate_task
from .user import load_jsonl_task

#: Tasks the benchmark and the example campaign use by default.
DEFAULT_PROMPT_SUITE: list[str] = ["sum", "first_letter", "plural", "antonyms"]


def list_prompt_tasks() -> list[str]:
    return sorted(SPECS)


def get_prompt_task(name: str, seed: int = 0, sizes: dict[str, int] | None = None) -> PromptTask:
    """A generated task by name (KeyError listing the known names)."""
    return generate_task(name, seed=seed, sizes=sizes)


__all__ = ["METRICS", "Example", "PromptTask", "first_line", "format_query", "match", "normalize",
           "DEFAULT_SIZES", "SPECS", "generate_task", "load_jsonl_task", "DEFAULT_PROMPT_SUITE",
           "list_prompt_tasks", "get_prompt_task", "DEMO_EDITS", "PLACEMENTS", "check_demos", "crossover_demos",
           "decode_prompt", "edit_demos", "encode_prompt", "instruction_of", "render_messages", "sample_demos",
           "with_instruction"]
