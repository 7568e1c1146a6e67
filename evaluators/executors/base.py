"""The executor interface: ``Executor.map(fn, items, timeout_s, on_done) -> list[Outcome]``.

``fn`` is a picklable module-level function, each item one unit of work, and
every item gets an :class:`Outcome` (a value, or an error / timeout with a
reason), in order. A failing item never stops the batch. ``on_done(index,
outcome)``, when given, is called in the calling thread as soon as each item's
outcome is known (in completion order, exactly once per item, before ``map``
returns), so a caller can act on (and persist) every finished item at once
instead of waiting for the whole batch. Also the helpers every executor shares
(time limits per item, torch threads, core counts).
"""
from __future__ import annotations

import abc
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

OutcomeStatus = Literal["ok", "error", "timeout"]


@dataclass
class Outcome:
    """What became of one item: ``value`` when ``status == "ok"``, else a ``reason``."""
    status: OutcomeStatus
    value: Any = None
    reason: str = ""
    seconds: float = 0.0
    worker: int | None = None        # pid of the process that ran it (None: this process / unknown)
    traceback: str = ""              # full traceback text for errors raised by fn

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads for each of ``workers`` processes so that workers x threads <= cores."""
    cores = cores or available_cores()
    return max(1, cores // max(1, workers))


def set_torch_threads(n: int) -> None:
    """Pin torch (and the OpenMP/MKL pools it uses) to ``n`` threads in this process."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    torch.set_num_threads(n)


def per_item_timeouts(timeout_s, n: int) -> list[float | None]:
    """One limit (or None: no limit) per item, from a single value or a sequence of n."""
    if timeout_s is None or isinstance(timeout_s, (int, float)):
        return [None if timeout_s is None else float(timeout_s)] * n
    limits = list(timeout_s)
    if len(limits) != n:
        raise ValueError(f"got {len(limits)} time limits for {n} items; give one per item or a single one")
    return [None if t is None else float(t) for t in limits]


#: ``on_done(index, outcome)``: called as each item finishes (see the module docstring).
OnDone = Callable[[int, "Outcome"], None] | None


class Executor(abc.ABC):
    """Runs ``fn`` over items; every item gets an Outcome, in order. Usable as a context manager.

    ``on_done(index, outcome)`` is called in the calling thread once per item as soon as its
    outcome is known (timeouts and crashed workers included). An exception raised by ``on_done``
    propagates out of ``map`` (the pool then kills the workers still busy with the batch).
    """

    name: str = "executor"
    #: How many items run at once (the evaluator uses it to decide how finely to split work).
    parallelism: int = 1

    @abc.abstractmethod
    def map(self, fn: Callable[[Any], Any], items: Sequence[Any],
            timeout_s: float | Sequence[float | None] | None = None,
            on_done: OnDone = None) -> list[Outcome]:
        """Run ``fn(item)`` for each item. ``timeout_s`` limits each item separately: one value for
        all, or one per item (None: no limit). ``on_done(index, outcome)`` is called as each item
        finishes."""

    def close(self) -> None:  # noqa: B027 - a no-op by default: not every executor holds resources
        """Release workers / connections. Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()



def error_reason(e: BaseException) -> str:
    """``"Type: message"`` (or the type alone) for an exception raised by a work function."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


__all__ = ["Outcome", "OutcomeStatus", "OnDone", "Executor", "per_item_timeouts", "available_cores",
           "threads_per_worker", "set_torch_threads", "error_reason"]
