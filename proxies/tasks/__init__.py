"""Rule tasks: the registry of stacked (vectorized) proxy training tasks for update rules.

Hand-written tasks (``quadratic``, ``rosenbrock``, ``digits_*``, ``char_lm``,
``modular_arith``) and the generic-``ModuleTask`` families of
``proxies.tasks.families``; a user's own task is named ``"package.module:factory"``
(``resolve_task``). ``TASK_GROUPS`` suggests disjoint search / validation /
transfer sets, disjoint in family (``task_family``). Sampled tasks of the task bank are named
``"bank:<family>/<key>=<value>,..."`` (``sample_tasks`` draws them, ``split_families`` splits
families into search / validation / test banks).

Modules: ``core`` (StackedTask, the RuleTask contract), ``train`` (the stacked loop), ``outcome``
(SweepOutcome, fidelities, splits, rungs), ``ops`` (stacked layers), the hand-written tasks
(``quadratic``, ``digits``, ``char_lm``, ``modular``), ``lm_ladder`` (the GPT ladder ``lm_s`` /
``lm_m`` / ``lm_l``), ``module`` (ModuleTask), ``families`` and
``datasets`` (its task families and their data), ``bank`` / ``bank_spec`` / ``bank_data`` (the
sampled task bank: models and re-parameterization, spec names and sampling, generated data),
``registry``, ``errors``.
"""
from __future__ import annotations

from . import bank
from .bank import bank_families, bank_family, build_model, draw_seed, reparameterize, sample_tasks, split_families
from .bank_spec import BankSpecError, format_spec, is_bank_spec, parse_spec
from .char_lm import CharLM
from .core import RuleTask, StackedTask
from .digits import DigitsLogReg, DigitsMLP
from .errors import TaskDefinitionError, TaskLoadError, TaskOverlapError, UnknownTaskError
from .families import FAMILIES
from .lm_ladder import RUNGS as LM_RUNGS
from .lm_ladder import LadderLM
from .lm_ladder import factory as _lm_factory
from .modular import ModularAddition
from .module import ModuleTask
from .outcome import FIDELITIES, SPLITS, Rung, SweepOutcome
from .quadratic import Quadratic, Rosenbrock
from .registry import (
    check_disjoint,
    get_task,
    is_task_spec,
    list_tasks,
    register_task,
    register_task_prefix,
    resolve_task,
    split_task_list,
    task_family,
)
from .train import curve_steps, run_sweep

for _cls, _family in ((Quadratic, "quadratic"), (Rosenbrock, "rosenbrock"), (DigitsLogReg, "digits_mlp"),
                      (DigitsMLP, "digits_mlp"), (CharLM, "char_lm"), (ModularAddition, "modular_arith")):
    register_task(_cls.name, _cls, _family)
for _name, (_factory, _family) in FAMILIES.items():
    register_task(_name, _factory, _family)
register_task_prefix("bank", bank.build_task, bank.bank_family)
# the language-model ladder: one family per rung, so a campaign can screen on lm_s and validate on
# lm_m (transfer across scale on the same corpus; see proxies.tasks.lm_ladder)
for _name in LM_RUNGS:
    register_task(_name, _lm_factory(_name), _name)

#: The default tasks of a campaign: one per family (the sanity tier, generalization on
#: real data, a transformer LM, and the grokking setting).
DEFAULT_SUITE: list[str] = ["quadratic", "digits_mlp", "char_lm", "modular_arith"]

#: Suggested disjoint task sets (no family in two of them): ``search`` screens and promotes,
#: ``validation`` ranks the promoted candidates, ``transfer`` is for reporting only.
TASK_GROUPS: dict[str, list[str]] = {
    "search": ["quadratic", "digits_mlp", "char_lm", "modular_arith"],
    "validation": ["seq_reverse", "diabetes_reg", "cancer_bce", "embed_memo"],
    "transfer": ["digits_cnn", "text_rnn", "digits_ae", "wine_deep", "rosenbrock"],
}

__all__ = ["FIDELITIES", "SPLITS", "Rung", "RuleTask", "StackedTask", "ModuleTask", "SweepOutcome",
           "DEFAULT_SUITE", "TASK_GROUPS", "get_task", "resolve_task", "list_tasks", "register_task",
           "task_family", "check_disjoint", "is_task_spec", "TaskLoadError", "TaskOverlapError", "UnknownTaskError",
           "TaskDefinitionError", "register_task_prefix", "split_task_list", "bank", "BankSpecError",
           "bank_families", "bank_family", "build_model", "draw_seed", "reparameterize", "sample_tasks",
           "split_families", "format_spec", "is_bank_spec", "parse_spec",
           "run_sweep", "curve_steps", "Quadratic", "Rosenbrock", "DigitsLogReg", "DigitsMLP", "CharLM",
           "ModularAddition", "LadderLM", "LM_RUNGS"]
