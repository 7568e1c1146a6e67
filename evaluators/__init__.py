"""Evaluators: one interface for every candidate kind; executors; caching.

- ``RuleEvaluator(RuleEvalConfig(...))``: update rules scored on proxy tasks relative to tuned AdamW
  (opt-in: ``WdGrid`` lr x wd tuning, ``SuccessiveHalving`` over the grid, ``task_clip``);
- ``PromptEvaluator(task, llm)``: prompts scored by a task model's accuracy (minibatch / dev / test);
- ``LLM``, ``ChatRequest``, ``ChatResponse``, ``Message``: the chat interface a prompt's task model
  is called through (backends in ``search.llm``);
- ``EvalCache``: results by (fingerprint, fidelity, config hash), in memory and SQLite;
- ``make_executor("inprocess" | "pool" | "ray", **kw)``: where evaluations run (``Executor.map``).

Modules: ``base`` (the interface and result models), ``rules`` (RuleEvaluator) with ``rule_config``
(its config, lr / wd grids, presets), ``sweeps`` (what a worker runs) and ``scoring``; ``stats``
(intervals and verdicts: ``estimate``, ``describe``); ``noise`` (AdamW-vs-AdamW noise floors); ``prompts``;
``cache``; ``llm``; ``executors/`` (base, inprocess, pool, ray); ``testing`` (misbehaving work).
"""
from .base import WORST_SCORE, Candidate, EvalResult, Evaluator, Status, TaskResult, accepts_on_result
from .cache import EvalCache
from .executors import Executor, InProcessExecutor, Outcome, ProcessPoolExecutor, RayExecutor, make_executor
from .llm import LLM, ChatRequest, ChatResponse, LLMSetupError, Message
from .noise import NOISY_ABOVE, NoiseError, NoiseFloor, default_cache_path, noise_floors
from .prompts import PromptEvaluator
from .rules import (
    TUNING_PRESETS,
    LrGrid,
    RuleEvalConfig,
    RuleEvaluator,
    SuccessiveHalving,
    WdGrid,
    with_tuning_preset,
)
from .scoring import floored_log_ratios, log_ratio, mean_score, tasks_won
from .stats import (
    VERDICTS,
    Estimate,
    StatsError,
    TaskEstimate,
    describe,
    estimate,
    estimate_results,
    per_seed_log_ratios,
)

__all__ = ["WORST_SCORE", "Candidate", "EvalResult", "Evaluator", "Status", "TaskResult", "RuleEvaluator",
           "RuleEvalConfig", "LrGrid", "WdGrid", "SuccessiveHalving", "TUNING_PRESETS", "log_ratio", "mean_score",
           "with_tuning_preset", "floored_log_ratios",
           "tasks_won", "EvalCache", "PromptEvaluator", "Executor", "Outcome", "InProcessExecutor",
           "ProcessPoolExecutor", "RayExecutor", "make_executor", "LLM", "ChatRequest", "ChatResponse",
           "LLMSetupError", "Message", "accepts_on_result", "VERDICTS", "Estimate", "TaskEstimate", "StatsError",
           "estimate", "estimate_results", "describe", "per_seed_log_ratios", "NoiseFloor", "NoiseError",
           "noise_floors", "NOISY_ABOVE", "default_cache_path"]
