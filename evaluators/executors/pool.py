"""A local process pool that can kill one stuck item without breaking the pool.

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

import multiprocessing as mp
import pickle
import signal
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing import connection as mp_connection

from .base import (
    Executor,
    Outcome,
    available_cores,
    error_reason,
    per_item_timeouts,
    set_torch_threads,
    threads_per_worker,
)


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
            reply = ("err", idx, (error_reason(e), traceback.format_exc()), time.perf_counter() - t0)
        try:
            conn.send(reply)
        except (BrokenPipeError, EOFError, OSError):
            return
        except Exception as e:  # noqa: BLE001 - e.g. an unpicklable return value
            conn.send(("err", idx, (f"the result could not be sent back to the parent: "
                                    f"{error_reason(e)}", ""), reply[3]))


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


def _stop(w: _Worker, grace: float) -> None:
    """Give ``w``'s process ``grace`` seconds to exit on its own, then SIGKILL it; close its pipe."""
    if grace > 0:
        w.proc.join(timeout=grace)
    if w.proc.is_alive():
        w.proc.kill()
    w.proc.join(timeout=10)
    try:
        w.conn.close()
    except OSError:
        pass


def _default_context() -> str:
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

    def _replace(self, w: _Worker) -> None:
        """SIGKILL ``w`` (stuck, dead or interrupted) and put a fresh worker in its place."""
        _stop(w, grace=0.0)
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
            _stop(w, grace=max(0.0, deadline - time.monotonic()))
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
                out[i] = Outcome("error", reason=f"could not send the item to a worker: {error_reason(e)}")
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
                    self._replace(w)
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
                        self._replace(w)
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
                            msg = ("err", i, (f"the result could not be read: {error_reason(e)}", ""),
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
                    self._replace(w)
                    done(i, o)
                elif w.deadline is not None and now >= w.deadline:
                    pid = w.pid
                    o = Outcome("timeout", seconds=now - w.started, worker=pid,
                                reason=f"stopped after {limits[i]:g}s time limit: worker process "
                                       f"(pid {pid}) killed")
                    w.idx = None
                    self.killed.append(pid)
                    self._replace(w)
                    done(i, o)
