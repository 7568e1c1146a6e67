"""Executors with REAL failures: sleeping past the limit (killed), os._exit, SIGKILL, exceptions."""
from __future__ import annotations

import os
import signal
import time

import pytest

from evaluators import testing as T
from evaluators.executors import InProcessExecutor, ProcessPoolExecutor, make_executor, threads_per_worker


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purposes only once reaped
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def pool():
    ex = ProcessPoolExecutor(workers=2)
    yield ex
    ex.close()


def test_pool_runs_items_in_order_like_in_process(pool):
    items = [3.0, -1.5, 0.0, 7.0, 2.0]
    got = pool.map(T.square, items)
    ref = InProcessExecutor().map(T.square, items)
    assert [o.status for o in got] == ["ok"] * 5
    assert [o.value for o in got] == [o.value for o in ref] == [x * x for x in items]
    assert all(o.worker in pool.pids for o in got)


def test_timeout_kills_the_worker_process_and_the_pool_keeps_working(pool, tmp_path):
    before = list(pool.pids)
    pidfile = tmp_path / "pid"
    items = [(60.0, str(pidfile)), (0.05, None), (0.05, None), (0.05, None)]
    t0 = time.monotonic()
    out = pool.map(T.sleep_for, items, timeout_s=1.5)
    elapsed = time.monotonic() - t0
    assert elapsed < 20, "the stuck item was not stopped"
    assert out[0].status == "timeout"
    assert "killed" in out[0].reason and "1.5s" in out[0].reason
    victim = int(pidfile.read_text())
    assert out[0].worker == victim and victim in pool.killed
    assert not _alive(victim), "the worker that overran was not killed"
    assert [o.status for o in out[1:]] == ["ok"] * 3
    # the pool replaced the worker and still has its full size
    assert len(pool.pids) == 2 and victim not in pool.pids
    assert all(_alive(p) for p in pool.pids)
    assert set(pool.pids) != set(before)
    again = pool.map(T.square, [1.0, 2.0, 3.0])
    assert [o.value for o in again] == [1.0, 4.0, 9.0]


def test_worker_that_calls_os_exit_is_an_error_and_the_batch_continues(pool):
    out = pool.map(T.hard_exit, [3])
    assert out[0].status == "error"
    assert "exited with code 3" in out[0].reason and "no result" in out[0].reason
    mixed = pool.map(T.square, [1.0, 2.0])
    assert [o.value for o in mixed] == [1.0, 4.0]


def test_one_batch_mixing_every_failure_never_stops(pool):
    items = [("square", 2.0), ("exit", 7), ("sigkill", None), ("raise", "boom"), ("sleep", (30.0, None)),
             ("unpicklable", None), ("square", 5.0), ("square", 6.0)]
    out = pool.map(T.behave, items, timeout_s=2.0)
    assert [o.status for o in out] == ["ok", "error", "error", "error", "timeout", "error", "ok", "ok"]
    assert [out[0].value, out[6].value, out[7].value] == [4.0, 25.0, 36.0]
    assert "exited with code 7" in out[1].reason
    assert "SIGKILL" in out[2].reason and "out-of-memory" in out[2].reason
    assert out[3].reason == "ValueError: boom" and "raise_value_error" in out[3].traceback
    assert "killed" in out[4].reason
    assert "could not be sent back" in out[5].reason
    assert len(pool.pids) == 2 and all(_alive(p) for p in pool.pids)


def test_exception_does_not_cost_the_worker(pool):
    before = sorted(pool.pids)
    out = pool.map(T.raise_value_error, ["a", "b", "c"])
    assert [o.reason for o in out] == ["ValueError: a", "ValueError: b", "ValueError: c"]
    assert sorted(pool.pids) == before


def test_unpicklable_result_and_item_are_errors(pool):
    out = pool.map(T.return_unpicklable, [None])
    assert out[0].status == "error" and "could not be sent back" in out[0].reason
    out = pool.map(T.square, [lambda: 1, 3.0])
    assert out[0].status == "error" and "could not send" in out[0].reason
    assert out[1].value == 9.0


def test_workers_split_the_cores_between_them(pool):
    got = {o.value for o in pool.map(T.torch_threads, [None] * 4)}
    assert got == {pool.threads}
    assert pool.threads * pool.workers <= max(os.cpu_count() or 1, pool.workers)
    assert threads_per_worker(4, cores=16) == 4 and threads_per_worker(3, cores=2) == 1


def test_in_process_notes_an_overrun_and_catches_errors():
    ex = InProcessExecutor()
    out = ex.map(T.sleep_for, [(0.3, None)], timeout_s=0.1)
    assert out[0].status == "ok" and out[0].value == os.getpid()
    assert "not enforced" in out[0].reason
    out = ex.map(T.raise_value_error, ["x"])
    assert out[0].status == "error" and out[0].reason == "ValueError: x"


def test_closed_pool_and_unknown_executor_say_what_to_do():
    ex = ProcessPoolExecutor(workers=1)
    ex.close()
    with pytest.raises(RuntimeError, match="closed"):
        ex.map(T.square, [1.0])
    with pytest.raises(ValueError, match="inprocess, pool, ray"):
        make_executor("threads")


def test_interrupted_map_leaves_a_clean_pool(pool):
    """Ctrl-C during a batch: the busy workers are killed and replaced, the next batch works."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        busy_before = list(pool.pids)
        with pytest.raises(KeyboardInterrupt):
            pool.map(T.sleep_for, [(30.0, None), (30.0, None)])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert not set(busy_before) & set(pool.pids)
    assert not any(_alive(p) for p in busy_before)
    assert [o.value for o in pool.map(T.square, [2.0, 3.0])] == [4.0, 9.0]
