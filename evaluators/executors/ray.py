"""Items as Ray tasks (``pip install 'optforge[ray]'``), each killed past its time limit.

``ray`` is imported inside the executor's methods, not at the top: it is an optional
dependency, and importing it costs 0.5 s (2-core container, load 6, 2026-12-01) that
every ``import evaluators`` would pay even when no Ray executor is made.
"""
from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

from .base import Executor, Outcome, error_reason, per_item_timeouts, set_torch_threads


def _ray_call(fn, item, threads: int, start_log, token: str):
    start_log.mark.remote(token)  # tells the driver the item has started (its clock starts now)
    set_torch_threads(threads)
    return fn(item)


class _StartLog:
    """A tiny Ray actor: tasks mark their start; the driver collects the marks."""

    def __init__(self):
        self._new: list[str] = []

    def mark(self, token: str) -> None:
        self._new.append(token)

    def collect(self) -> list[str]:
        new, self._new = self._new, []
        return new


class RayExecutor(Executor):
    """Runs items as Ray tasks (``pip install 'optforge[ray]'``).

    ``address`` is a cluster address (``"auto"``, ``"ray://host:10001"``, ...);
    None starts (or reuses) a local Ray instance with ``num_cpus`` CPUs.
    Items are submitted no faster than the cluster has CPUs. An item's clock
    starts when its task reports that it started (so a Ray worker's own start-up
    does not count); past its limit the task is cancelled with
    ``ray.cancel(force=True)``, which kills its worker process. An item that
    never reports a start is given up ``startup_grace_s`` after its limit. Tasks
    are never retried: a crashed worker is an error for its item.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 threads: int = 1, init_kwargs: dict | None = None, startup_grace_s: float = 120.0,
                 poll_s: float = 0.1):
        try:
            import ray  # noqa: F401 - optional, see the module docstring
        except ImportError as e:
            raise ImportError("the Ray executor needs ray: pip install 'optforge[ray]'") from e
        self.address = address
        self.num_cpus = num_cpus
        self.threads = threads
        self.init_kwargs = dict(init_kwargs or {})
        self.startup_grace_s = startup_grace_s
        self.poll_s = poll_s
        self._owns_ray = False
        self._remote = None
        self._log = None
        self._calls = 0
        self.parallelism = num_cpus or 1

    def _ensure(self):
        import ray
        if not ray.is_initialized():
            kw = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(num_cpus=self.num_cpus, **kw)
            self._owns_ray = True
        if self._remote is None:
            self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_call)
            self._log = ray.remote(num_cpus=0)(_StartLog).remote()
        self.parallelism = max(1, int(ray.cluster_resources().get("CPU", 1)))
        return ray

    def map(self, fn, items, timeout_s=None, on_done=None):
        ray = self._ensure()
        n = len(items)
        limits = per_item_timeouts(timeout_s, n)
        self._calls += 1
        tag = f"{os.getpid()}-{id(self)}-{self._calls}"
        out: list[Outcome | None] = [None] * n
        pending = deque(range(n))
        running: dict[Any, int] = {}                  # ref -> index
        submitted: dict[int, float] = {}
        started: dict[int, float] = {}
        cap = self.parallelism

        def done(i: int, o: Outcome) -> None:
            out[i] = o
            if on_done is not None:
                on_done(i, o)

        while pending or running:
            while pending and len(running) < cap:
                i = pending.popleft()
                try:
                    ref = self._remote.remote(fn, items[i], self.threads, self._log, f"{tag}:{i}")
                except Exception as e:  # noqa: BLE001 - e.g. unpicklable item
                    done(i, Outcome("error", reason=f"could not submit the item to Ray: {error_reason(e)}"))
                    continue
                running[ref] = i
                submitted[i] = time.monotonic()
            if not running:
                continue
            ready, _ = ray.wait(list(running), num_returns=1, timeout=self.poll_s)
            now = time.monotonic()
            for token in ray.get(self._log.collect.remote()):
                t, _, idx = token.rpartition(":")
                if t == tag:
                    started.setdefault(int(idx), now)
            for ref in ready:
                i = running.pop(ref)
                done(i, self._collect(ray, ref, now - started.get(i, submitted[i])))
            for ref, i in list(running.items()):
                limit = limits[i]
                if limit is None:
                    continue
                t0 = started.get(i)
                over = (now - t0 >= limit) if t0 is not None else \
                    (now - submitted[i] >= limit + self.startup_grace_s)
                if over:
                    ray.cancel(ref, force=True)
                    running.pop(ref)
                    what = "cancelled with force=True (its worker process killed)" if t0 is not None \
                        else f"never started within {self.startup_grace_s:g}s, cancelled"
                    done(i, Outcome("timeout", seconds=now - (t0 or submitted[i]),
                                    reason=f"stopped after {limit:g}s time limit: Ray task {what}"))
        return out  # type: ignore[return-value]

    @staticmethod
    def _collect(ray, ref, seconds: float) -> Outcome:
        from ray import exceptions as rex
        try:
            return Outcome("ok", value=ray.get(ref), seconds=seconds)
        except rex.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if cause is not None:
                return Outcome("error", reason=error_reason(cause), seconds=seconds, traceback=str(e))
            return Outcome("error", reason=str(e).strip().splitlines()[-1], seconds=seconds, traceback=str(e))
        except (rex.WorkerCrashedError, rex.RayError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return Outcome("error", seconds=seconds,
                           reason=f"the Ray worker running this item died ({type(e).__name__}: {first})")

    def close(self) -> None:
        if self._owns_ray:
            import ray
            ray.shutdown()
            self._owns_ray = False
        self._remote = None
        self._log = None
