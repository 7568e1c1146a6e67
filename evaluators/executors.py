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
"""
from __future__ import annotations

import abc
import os
import pickle
import signal
import time
import traceback
import weakref
from collections import deque
from dataclasses import dataclass
from multiprocessing import connection as mp_connection
from typing import Any, Callable, Literal, Optional, Sequence

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
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
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
OnDone = Optional[Callable[[int, "Outcome"], None]]


def _error_reason(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


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

    def close(self) -> None:
        """Release workers / connections. Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------
# In process
# ---------------------------------------------------------------------------

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
                o = Outcome("error", reason=_error_reason(e), seconds=time.perf_counter() - t0,
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


# ---------------------------------------------------------------------------
# Local process pool
# ---------------------------------------------------------------------------

def _worker_main(conn, threads: int) -> None:
    """Worker loop: receive (index, pickled (fn, item)), reply ("ok"|"err", index, payload, seconds)."""
    # Never let the worker take the parent's Ctrl-C: the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_torch_threads(threads)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if msg is None:
            return
        idx, blob = msg
        t0 = time.perf_counter()
        try:
            fn, item = pickle.loads(blob)
            reply = ("ok", idx, fn(item), time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001
            reply = ("err", idx, (_error_reason(e), traceback.format_exc()), time.perf_counter() - t0)
        try:
            conn.send(reply)
        except (BrokenPipeError, EOFError, OSError):
            return
        except Exception as e:  # noqa: BLE001 - e.g. an unpicklable return value
            conn.send(("err", idx, (f"the result could not be sent back to the parent: "
                                    f"{_error_reason(e)}", ""), reply[3]))


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exited (status unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed from outside, e.g. by the out-of-memory killer)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"


class _Worker:
    __slots__ = ("proc", "conn", "idx", "started", "deadline")

    def __init__(self, proc, conn):
        self.proc = proc
        self.conn = conn
        self.idx: int | None = None
        self.started = 0.0
        self.deadline: float | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid


def _default_context() -> str:
    import multiprocessing as mp
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


class ProcessPoolExecutor(Executor):
    """A pool of worker processes that can kill a single stuck item (see the module docstring).

    ``workers`` defaults to all available cores; each worker runs torch with
    ``cores // workers`` threads. Workers are started on first use and reused
    across ``map`` calls; a killed or dead worker is replaced at once.
    ``context`` is ``"forkserver"`` (default on Linux: replacements start in
    milliseconds because torch and the project's packages are imported once in
    the fork server; ``preload`` names them, missing ones are skipped) or
    ``"spawn"``. A task's data is still built on a worker's first use of it, and
    that counts toward the item's time limit.
    """

    name = "pool"

    def __init__(self, workers: int | None = None, threads: int | None = None,
                 context: str | None = None,
                 preload: Sequence[str] = ("torch", "numpy", "dsl", "proxies", "evaluators.rules")):
        import multiprocessing as mp
        self.workers = max(1, workers or available_cores())
        self.parallelism = self.workers
        self.threads = threads or threads_per_worker(self.workers)
        ctx_name = context or _default_context()
        self._ctx = mp.get_context(ctx_name)
        if ctx_name == "forkserver" and preload:
            # Only effective before the (process-wide) fork server starts.
            self._ctx.set_forkserver_preload(list(preload))
        self._pool: list[_Worker] = []
        self._closed = False
        self.killed: list[int] = []      # pids killed for overrunning their time limit (for inspection)
        # Runs on close(), on garbage collection, or at interpreter exit, whichever comes first.
        self._finalizer = weakref.finalize(self, ProcessPoolExecutor._shutdown, self._pool)

    # -- worker management -------------------------------------------------
    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, args=(child, self.threads), daemon=True,
                                 name="optforge-eval-worker")
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _ensure_started(self) -> None:
        if self._closed:
            raise RuntimeError("this ProcessPoolExecutor is closed; create a new one")
        while len(self._pool) < self.workers:
            self._pool.append(self._spawn())

    def _replace(self, w: _Worker, kill: bool) -> None:
        if kill and w.proc.is_alive():
            w.proc.kill()
        w.proc.join(timeout=10)
        try:
            w.conn.close()
        except OSError:
            pass
        i = self._pool.index(w)
        self._pool[i] = self._spawn()

    @property
    def pids(self) -> list[int]:
        """Pids of the current workers (started on first use)."""
        return [w.pid for w in self._pool]

    @staticmethod
    def _shutdown(pool: list[_Worker]) -> None:
        for w in pool:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for w in pool:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=5)
            try:
                w.conn.close()
            except OSError:
                pass
        pool.clear()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._finalizer()

    # -- the map loop ------------------------------------------------------
    def map(self, fn, items, timeout_s=None, on_done=None):
        self._ensure_started()
        n = len(items)
        limits = per_item_timeouts(timeout_s, n)
        out: list[Outcome | None] = [None] * n
        pending: deque[int] = deque(range(n))
        blobs: dict[int, bytes] = {}
        refused: list[int] = []
        for i, item in enumerate(items):
            try:
                blobs[i] = pickle.dumps((fn, item), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # noqa: BLE001
                out[i] = Outcome("error", reason=f"could not send the item to a worker: {_error_reason(e)}")
                refused.append(i)
        pending = deque(i for i in pending if out[i] is None)

        def done(i: int, o: Outcome) -> None:
            out[i] = o
            if on_done is not None:
                on_done(i, o)

        try:
            for i in refused:
                if on_done is not None:
                    on_done(i, out[i])
            self._loop(pending, blobs, limits, done)
        except BaseException:
            # Interrupted (Ctrl-C) or a bug: workers still busy with this batch are killed so the
            # pool is clean for the next call.
            for w in self._pool:
                if w.idx is not None:
                    w.idx = None
                    self._replace(w, kill=True)
            raise
        return [o for o in out]  # type: ignore[misc]

    def _loop(self, pending: deque, blobs: dict, limits: list, done: Callable[[int, Outcome], None]) -> None:
        """Dispatch, wait, collect until every item has an outcome (``done(i, outcome)`` records it)."""
        dispatch_failures: dict[int, int] = {}
        while pending or any(w.idx is not None for w in self._pool):
            # 1. hand items to idle workers
            for w in self._pool:
                if w.idx is None and pending:
                    i = pending.popleft()
                    try:
                        w.conn.send((i, blobs[i]))
                    except (OSError, ValueError) as e:
                        # The worker died while idle: not the item's fault; retry on a fresh worker.
                        dispatch_failures[i] = dispatch_failures.get(i, 0) + 1
                        if dispatch_failures[i] > 2:
                            done(i, Outcome("error", reason=f"could not reach a worker process: {e}"))
                        else:
                            pending.appendleft(i)
                        self._replace(w, kill=True)
                        continue
                    w.idx, w.started = i, time.monotonic()
                    w.deadline = None if limits[i] is None else w.started + limits[i]
            busy = [w for w in self._pool if w.idx is not None]
            if not busy:
                continue
            # 2. wait for a reply, a death, or the nearest deadline
            deadlines = [w.deadline for w in busy if w.deadline is not None]
            wait_for = None if not deadlines else max(0.0, min(deadlines) - time.monotonic())
            handles = [w.conn for w in busy] + [w.proc.sentinel for w in busy]
            ready = set(mp_connection.wait(handles, timeout=wait_for))
            now = time.monotonic()
            # 3. collect
            for w in busy:
                i = w.idx
                if w.conn in ready or w.proc.sentinel in ready:
                    msg = None
                    if w.conn.poll():
                        try:
                            msg = w.conn.recv()
                        except (EOFError, OSError):
                            msg = None
                        except Exception as e:  # noqa: BLE001 - result that cannot be unpickled here
                            msg = ("err", i, (f"the result could not be read: {_error_reason(e)}", ""),
                                   now - w.started)
                    if msg is not None:
                        kind, _, payload, secs = msg
                        w.idx = None
                        if kind == "ok":
                            done(i, Outcome("ok", value=payload, seconds=secs, worker=w.pid))
                        else:
                            done(i, Outcome("error", reason=payload[0], traceback=payload[1],
                                            seconds=secs, worker=w.pid))
                        continue
                    # No reply and the pipe closed or the process ended: the worker died.
                    w.proc.join(timeout=5)
                    o = Outcome("error", seconds=now - w.started, worker=w.pid,
                                reason=f"the worker process (pid {w.pid}) "
                                       f"{_describe_exit(w.proc.exitcode)} while evaluating this "
                                       "item; no result was produced")
                    w.idx = None
                    self._replace(w, kill=True)
                    done(i, o)
                elif w.deadline is not None and now >= w.deadline:
                    pid = w.pid
                    o = Outcome("timeout", seconds=now - w.started, worker=pid,
                                reason=f"stopped after {limits[i]:g}s time limit: worker process "
                                       f"(pid {pid}) killed")
                    w.idx = None
                    self.killed.append(pid)
                    self._replace(w, kill=True)
                    done(i, o)


# ---------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------

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
            import ray  # noqa: F401
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
                    done(i, Outcome("error", reason=f"could not submit the item to Ray: {_error_reason(e)}"))
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
                return Outcome("error", reason=_error_reason(cause), seconds=seconds, traceback=str(e))
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


# ---------------------------------------------------------------------------

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


__all__ = ["Outcome", "OnDone", "Executor", "per_item_timeouts", "InProcessExecutor", "ProcessPoolExecutor",
           "RayExecutor", "make_executor", "EXECUTORS", "available_cores", "threads_per_worker",
           "set_torch_threads"]
