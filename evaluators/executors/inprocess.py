"""Items one after another in this process: for tests and debugging (pdb works)."""
from __future__ import annotations

import time
import traceback

from .base import Executor, Outcome, error_reason, per_item_timeouts, set_torch_threads


class InProcessExecutor(Executor):
    """Runs items one after another in this process: for tests and debugging (pdb works).

    Time limits cannot be enforced without a separate process; an item that ran
    past ``timeout_s`` keeps its value, and the overrun is noted in ``reason``.
    """

    name = "inprocess"
    parallelism = 1

    def __init__(self, threads: int | None = None):
        if threads:
            set_torch_threads(threads)

    def map(self, fn, items, timeout_s=None, on_done=None):
        out = []
        limits = per_item_timeouts(timeout_s, len(items))
        for i, (item, limit) in enumerate(zip(items, limits)):
            t0 = time.perf_counter()
            try:
                value = fn(item)
            except Exception as e:  # noqa: BLE001 - one bad item never stops the batch
                o = Outcome("error", reason=error_reason(e), seconds=time.perf_counter() - t0,
                            traceback=traceback.format_exc())
            else:
                dt = time.perf_counter() - t0
                note = ""
                if limit is not None and dt > limit:
                    note = (f"ran {dt:.1f}s, past its {limit:g}s time limit (not enforced by the "
                            "in-process executor; use the process pool to enforce it)")
                o = Outcome("ok", value=value, reason=note, seconds=dt)
            out.append(o)
            if on_done is not None:
                on_done(i, o)
        return out
