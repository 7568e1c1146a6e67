"""The ``[prompt]`` table of a prompt campaign (``PromptOptions``) and the task it names."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from proxies.prompts import PromptTask, generate_task, load_jsonl_task
from search.core import Campaign

ALGORITHM_STRATEGY = {"ga": "evoprompt_ga", "de": "evoprompt_de", "opro": "opro", "rewrite": "prompt_rewrite",
                      "demos": "demo_search"}
LLM_OPERATOR = {"ga": "prompt_ga", "de": "prompt_de", "opro": "prompt_opro", "rewrite": "prompt_rewrite"}


class PromptOptions(BaseModel):
    """The ``[prompt]`` table of a prompt campaign."""
    model_config = ConfigDict(extra="forbid")

    task: str | None = None                 # a generated task (proxies.prompts.list_prompt_tasks())
    task_file: str | None = None            # or a JSONL file of {"input", "output"} lines
    metric: Literal["exact", "normalized", "contains"] | None = None  # None: the task's own
    description: str | None = None          # task description (OPRO's meta-prompt); JSONL tasks need one
    initial_prompt: str | None = None       # None: the task's plain initial prompt
    seed_prompts: list[str] = Field(default_factory=list)  # more starting prompts
    task_seed: int = 0                      # data generation seed
    sizes: dict[str, int] = Field(default_factory=dict)    # split sizes, e.g. {dev = 30, test = 60}
    task_model: dict[str, Any] | None = None  # search.llm.LLMConfig fields; None: the default (local)
    task_system: str | None = None          # optional system message for the task model
    max_tokens: int | None = Field(None, ge=1)  # task-model reply limit; None: the task's
    minibatch: int = Field(10, ge=1)        # screening subset of dev
    minibatch_seed: int = 0
    max_prompt_chars: int = Field(600, ge=10)
    algorithm: Literal["ga", "de", "opro", "rewrite", "demos"] = "ga"   # demos: demonstration search, no LLM
    # Few-shot: the seed prompts start with this many train demonstrations (drawn with the campaign's
    # random_seed); LLM operators edit the instruction and keep the demonstrations, the "demos"
    # algorithm edits the demonstrations (proxies.prompts.demos has the text encoding).
    demos: int = Field(0, ge=0, le=32)
    max_demos: int = Field(8, ge=1, le=32)  # the demonstration edits never grow a set past this
    demo_placement: Literal["chat", "instruction"] = "chat"   # earlier chat turns (measured better) or inline
    fill: bool = True                       # fill the population with LLM paraphrases first (not OPRO)
    temperature: float = Field(0.8, ge=0)   # proposer sampling temperature
    proposer_max_tokens: int = Field(96, ge=8)
    opro_top: int = Field(8, ge=1)          # prompts shown in OPRO's meta-prompt
    opro_examples: int = Field(3, ge=0)     # training examples shown in OPRO's meta-prompt
    test_top: int = Field(3, ge=0)          # prompts scored on the test split at the end
    # A finalist replaces the initial prompt only when its paired bootstrap interval over the dev
    # examples lies above 0, the lower bound at this level, after a race that stops clearly worse
    # ones on the minibatch (search.prompts.select; small dev splits let noise win: measured in
    # bench/results/prompts.md). 1.0 (or None from Python): plain best-by-dev, as EvoPrompt and
    # OPRO return it.
    select_alpha: float | None = Field(0.1, gt=0, le=1)

    @model_validator(mode="after")
    def _one_task(self) -> "PromptOptions":
        if (self.task is None) == (self.task_file is None):
            raise ValueError("[prompt] needs exactly one of task = \"<name>\" (a generated task) or "
                             "task_file = \"data.jsonl\" (your own input/output pairs)")
        return self


def build_task(opts: PromptOptions, base_dir: Path | str = ".") -> PromptTask:
    """The PromptTask a campaign names (generated or from its JSONL file)."""
    if opts.task is not None:
        task = generate_task(opts.task, seed=opts.task_seed, sizes=opts.sizes or None)
    else:
        p = Path(opts.task_file)
        if not p.is_absolute() and not p.exists():
            p = Path(base_dir) / p
        task = load_jsonl_task(p, metric=opts.metric or "normalized", description=opts.description or "",
                               initial_prompt=opts.initial_prompt or "Answer the input.", seed=opts.task_seed)
    if opts.initial_prompt:
        task.initial_prompt = opts.initial_prompt
    if opts.description:
        task.description = opts.description
    return task


def prompt_options(campaign: Campaign) -> PromptOptions:
    """The campaign's parsed ``[prompt]`` table (parsed now when the kind has not validated it yet)."""
    o = campaign.options
    if not isinstance(o, PromptOptions):
        o = PromptOptions.model_validate(campaign.table or {})
        campaign.set_options(o)
    return o


def campaign_task(campaign: Campaign) -> PromptTask:
    """The task of a prompt campaign: :func:`build_task` on its ``[prompt]`` table, a relative
    ``task_file`` resolved next to the campaign file."""
    return build_task(prompt_options(campaign), Path(campaign.source_path).parent if campaign.source_path else ".")
