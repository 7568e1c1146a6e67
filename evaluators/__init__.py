"""Evaluators: one interface for every candidate kind; executors; caching.

- ``RuleEvaluator(RuleEvalConfig(...))``: update rules scored on proxy tasks relative to tuned AdamW;
- ``EvalCache``: results by (fingerprint, fidelity, config hash), in memory and SQLite;
- ``make_executor("inprocess" | "pool" | "ray", **kw)``: where evaluations run (``Executor.map``).
"""
from .base import WORST_SCORE, Candidate, EvalResult, Evaluator, Status, TaskResult
from .cache import EvalCache
from .executors import (Executor, InProcessExecutor, Outcome, ProcessPoolExecutor, RayExecutor,
                        make_executor)
from .rules import LrGrid, RuleEvalConfig, RuleEvaluator

__all__ = ["WORST_SCORE", "Candidate", "EvalResult", "Evaluator", "Status", "TaskResult",
           "RuleEvaluator", "RuleEvalConfig", "LrGrid", "EvalCache",
           "Executor", "Outcome", "InProcessExecutor", "ProcessPoolExecutor", "RayExecutor", "make_executor"]
