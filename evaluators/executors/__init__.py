"""Where evaluations run: in process, in a local process pool, or on Ray.

One small interface, ``Executor.map(fn, items, timeout_s, on_done) -> list[Outcome]``:
``fn`` is a picklable module-level function, each item one unit of work, and
every item gets an :class:`Outcome` (a value, or an error / timeout with a
reason), in order. A failing item never stops the batch. ``on_done(index,
outcome)``, when given, is called in the calling thread as soon as each item's
outcome is known (in completion order, exactly once per item, before ``map``
returns), so a caller can act on (and persist) every finished item at once
instead of waiting for the whole batch.

Time limits are enforced by killing the worker *process* that runs the item
(never a thread: a thread stuck in a torch kernel cannot be stopped). The
standard library's ``concurrent.futures.ProcessPoolExecutor`` cannot kill one
stuck task without breaking the whole pool, so :class:`ProcessPoolExecutor`
here is a small pool written over ``multiprocessing`` pipes: one duplex pipe
per worker, one item in flight per worker, and ``connection.wait`` over the
pipes and the process sentinels. A worker past its deadline is SIGKILLed and
replaced; a worker that dies on its own (segfault, ``os._exit``, the OOM
killer) is reported as an error for the item it held and replaced too.

Modules: ``base`` (the interface, :class:`Outcome`, shared helpers), ``inprocess``,
``pool`` (the killable process pool), ``ray``.
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
