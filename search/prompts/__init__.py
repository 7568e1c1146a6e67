"""Prompt optimization on the engine: the ``prompt`` candidate kind, its operators and strategies.

A campaign with ``kind = "prompt"`` names its task, task model and algorithm in ``[prompt]``
(parsed by :class:`PromptOptions`); the proposer (optimizer) model is the campaign's ``[llm]``
table, exactly as for rule discovery. Everything else (population loop, funnel, novelty
check, budgets, SQLite store, resume, show/export/report) is the engine's.

Algorithms (``[prompt] algorithm``, which selects ``[search] strategy``; the meta-prompts
and reply parsing are in search.prompts.text):

=========  ====================  =================================================
algorithm  strategy              children per generation (``search.batch_size``)
=========  ====================  =================================================
ga         ``evoprompt_ga``      roulette pair -> ``prompt_ga``; best N survive
de         ``evoprompt_de``      next members in turn -> ``prompt_de``; child
                                 replaces its member when at least as good
opro       ``opro``              top-k trajectory -> ``prompt_opro``; best N kept
rewrite    ``prompt_rewrite``    tournament parent -> ``prompt_rewrite``; best N
demos      ``demo_search``       tournament parents -> ``prompt_demo_cross`` or
                                 ``prompt_demo_edit`` (no LLM); best N survive
=========  ====================  =================================================

Until the population holds ``search.population`` prompts, GA, DE and rewrite first fill it
with LLM paraphrases of the best prompt (EvoPrompt's initialization; OPRO starts from the
initial prompt alone). An LLM proposal that cannot be used (format broken, empty, duplicate,
echo of the instructions, too long, LLM budget spent or backend down) is recorded with its
reason and the engine retries the slot with the random operator ``prompt_edit`` (a
word-level edit), so a campaign never stalls on a tiny proposer.

Few-shot candidates (``[prompt] demos = k``): the seed prompts start with k train
demonstrations; the text is ``<instruction> [demos: 3, 7, 1]`` (proxies.prompts.demos); the
LLM operators edit only the instruction and keep the demonstrations; the demonstration
operators (no LLM) change only the demonstrations. The task model sees them as earlier
user / assistant turns (``demo_placement = "chat"``, the default) or inside the instruction.

Survival compares (fidelity level, score): a child screened on the minibatch but not
promoted to the dev set ranks below every prompt scored on dev. After the search,
``final.finalize_prompt_run`` scores the top ``test_top`` prompts (by dev) and the initial
prompt on the held-out test split; the test split never takes part in any selection. A top
prompt replaces the initial one only when its paired bootstrap interval over the dev examples lies
above 0 after a race for more examples (``select``; ``select_alpha``, default 0.1; 1.0 for plain
best-by-dev).

Modules: ``options`` (the ``[prompt]`` table, the task), ``kind`` (``PromptKind``), ``text``
(meta-prompts, reply parsing, word edits), ``operators``, ``strategies``, ``final`` (test split,
the sign test), ``select`` (paired intervals, the race to replace the initial prompt), ``show``
(show / report lines), ``compare`` (several runs side by side).
Importing the package registers the kind, its operators and its strategies.
"""
from .compare import (
    CompareError,
    calls_curve,
    compare_text,
    load_rows,
    markdown_table,
    plot_curves,
    run_row,
    write_compare_report,
)
from .final import dev_sign_test, finalize_prompt_run, prompt_final, sign_test_p
from .kind import PromptKind
from .operators import (
    DemoCrossOperator,
    DemoEditOperator,
    DEOperator,
    EditOperator,
    GAOperator,
    OPROOperator,
    ParaphraseOperator,
    RewriteOperator,
)
from .options import ALGORITHM_STRATEGY, LLM_OPERATOR, PromptOptions, build_task, campaign_task, prompt_options
from .select import PairedInterval, paired_interval, race_to_replace
from .show import best_dev_curve, prompt_report_sections, prompt_show_lines
from .strategies import OPRO, DemoSearch, EvoPromptDE, EvoPromptGA, Rewrite

__all__ = ["CompareError", "calls_curve", "compare_text", "load_rows", "markdown_table", "plot_curves", "run_row",
           "write_compare_report",
           "dev_sign_test", "finalize_prompt_run", "prompt_final", "sign_test_p", "PromptKind", "DEOperator",
           "EditOperator", "GAOperator", "OPROOperator", "ParaphraseOperator", "RewriteOperator",
           "ALGORITHM_STRATEGY", "LLM_OPERATOR", "PromptOptions", "build_task", "campaign_task", "prompt_options",
           "best_dev_curve", "PairedInterval", "paired_interval", "race_to_replace",
           "prompt_report_sections", "prompt_show_lines", "OPRO", "EvoPromptDE", "EvoPromptGA", "Rewrite",
           "DemoCrossOperator", "DemoEditOperator", "DemoSearch"]
