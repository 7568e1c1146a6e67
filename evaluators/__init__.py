"""Evaluators: one interface for every candidate kind; executors; caching."""
from .base import WORST_SCORE, Candidate, EvalResult, Evaluator, Status, TaskResult

__all__ = ["WORST_SCORE", "Candidate", "EvalResult", "Evaluator", "Status", "TaskResult"]
