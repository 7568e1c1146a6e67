"""Where evaluations run: in process, in a local process pool, or on Ray.

Every executor has one call, ``Executor.map(fn, items, timeout_s, on_done) -> list[Outcome]``:
each item gets an :class:`Outcome` in order and a failing item never stops the batch
(the contract is in ``base``). Time limits kill the worker *process*, never a thread.

Modules: ``base`` (the interface, :class:`Outcome`, shared helpers), ``inprocess``,
``pool`` (the killable process pool over ``multiprocessing`` pipes), ``ray``.
"""
from __future__ import annotations

from .base import (
    Executor,
    OnDone,
    Outcome,
    OutcomeStatus,
    available_cores,
    error_reason,
    per_item_timeouts,
    set_torch_threads,
    threads_per_worker,
)
from .inprocess import InProcessExecutor
from .pool import ProcessPoolExecutor
from .ray import RayExecutor

EXECUTORS = ("inprocess", "pool", "ray")


def make_executor(name: str = "pool", **kw) -> Executor:
    """Executor by name: ``inprocess``, ``pool`` (kw: workers, threads, context) or ``ray``
    (kw: address, num_cpus, threads, init_kwargs)."""
    if name == "inprocess":
        return InProcessExecutor(**kw)
    if name == "pool":
        return ProcessPoolExecutor(**kw)
    if name == "ray":
        return RayExecutor(**kw)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


__all__ = ["Outcome", "OutcomeStatus", "OnDone", "Executor", "per_item_timeouts", "InProcessExecutor",
           "ProcessPoolExecutor", "RayExecutor", "make_executor", "EXECUTORS", "available_cores",
           "threads_per_worker", "set_torch_threads", "error_reason"]
