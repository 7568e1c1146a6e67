"""Rule tasks: the registry of stacked (vectorized) proxy training tasks for update rules."""
from __future__ import annotations

from .char_lm import CharLM
from .core import FIDELITIES, SPLITS, RuleTask, StackedTask, SweepOutcome, curve_steps, run_sweep
from .digits import DigitsLogReg, DigitsMLP
from .modular import ModularAddition
from .quadratic import Quadratic, Rosenbrock

_CLASSES: dict[str, type[StackedTask]] = {c.name: c for c in (
    Quadratic, Rosenbrock, DigitsLogReg, DigitsMLP, CharLM, ModularAddition)}
_INSTANCES: dict[str, StackedTask] = {}

#: The default tasks of a campaign: one per family (the sanity tier, generalization on
#: real data, a transformer LM, and the grokking setting).
DEFAULT_SUITE: list[str] = ["quadratic", "digits_mlp", "char_lm", "modular_arith"]


def list_tasks() -> list[str]:
    """Names of every rule task."""
    return list(_CLASSES)


def get_task(name: str) -> StackedTask:
    """The task called ``name`` (one shared instance per process; its data is built once)."""
    if name not in _CLASSES:
        raise KeyError(f"unknown rule task {name!r}; known tasks: {', '.join(_CLASSES)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _CLASSES[name]()
    return _INSTANCES[name]


__all__ = ["FIDELITIES", "SPLITS", "RuleTask", "StackedTask", "SweepOutcome", "DEFAULT_SUITE", "get_task", "list_tasks",
           "run_sweep", "curve_steps", "Quadratic", "Rosenbrock", "DigitsLogReg", "DigitsMLP", "CharLM",
           "ModularAddition"]
