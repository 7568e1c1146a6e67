"""Kill a campaign with SIGKILL mid-run, resume it: nothing finished is lost, the budget is met
exactly, and the result equals an uninterrupted run's (random state restored)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import small_rule_campaign

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 24

CAMPAIGN = small_rule_campaign("killme", executor="inprocess", seed=7, budget=BUDGET, batch=2)


def _env():
    return {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _cli(tmp: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search.cli", "run", "camp.toml", "--plain", *args], cwd=tmp,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _rows(db: Path, columns: str = "seq, candidate_id, key, fidelity, score, cost") -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(f"SELECT {columns} FROM evaluations ORDER BY seq").fetchall()
    finally:
        con.close()


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return len(_rows(db))
    except sqlite3.Error:
        return 0


def test_sigkill_then_resume_loses_nothing_and_matches_an_uninterrupted_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "camp.toml").write_text(CAMPAIGN)
    reference = _cli(b)                       # uninterrupted run, same seed
    proc = _cli(a)
    db = a / "runs" / "killme" / "run.sqlite"
    deadline = time.time() + 120
    while _count(db) < 8 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = _rows(db)
    assert 8 <= len(before) < BUDGET, f"the kill came too late ({len(before)} evaluations)"

    # without --resume/--fresh the CLI refuses and says what to do
    refused = subprocess.run([sys.executable, "-m", "search.cli", "run", "camp.toml"], cwd=a, env=_env(),
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "--resume" in refused.stderr and "--fresh" in refused.stderr

    out, _ = _cli(a, "--resume").communicate(timeout=300)
    after = _rows(db)
    assert after[: len(before)] == before, "a finished evaluation was lost or changed"
    assert len(after) == BUDGET and sum(r[5] for r in after) == BUDGET, out

    ref_out, _ = reference.communicate(timeout=300)
    ref = _rows(b / "runs" / "killme" / "run.sqlite")
    assert [r[:4] for r in ref] == [r[:4] for r in after], "resumed run diverged from the uninterrupted one"
    assert all(abs(x[4] - y[4]) <= 1e-9 * max(1.0, abs(x[4])) for x, y in zip(ref, after))


# ---------------------------------------------------------------------------------------------
# Per-result durability: a kill in the middle of an evaluator batch keeps the batch's finished
# trainings, and the resumed run does not train them again.
# ---------------------------------------------------------------------------------------------

STREAM_BUDGET = 11

# Runs the campaign in this directory and prints how many candidates the evaluator trained.
# (The __main__ guard: pool workers start by importing the parent's main module.)
DRIVER = """
import json, sys
from search.core import Engine, load_campaign

if __name__ == "__main__":
    eng = Engine(load_campaign("camp.toml"), None, resume="--resume" in sys.argv)
    try:
        eng.run()
        print("TRAINED", json.dumps(eng.evaluator.trained))
    finally:
        eng.close()
"""


def _driver(d: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "driver.py", *args], cwd=d, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _trained(out: str) -> int:
    lines = [ln for ln in out.splitlines() if ln.startswith("TRAINED ")]
    assert lines, out
    return int(lines[-1].split()[1])


def _ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def _mid_batch(run: Path) -> tuple[int, int, int]:
    """For the generation after the last checkpoint: (results in the run store, candidates with no
    result anywhere yet, results only in the evaluator's cache). (0, 0, 0) when not readable yet.

    The store is read before the evaluator's cache, and a result enters the cache before the store,
    so a candidate in neither was still training when the stored results were already durable."""
    db, cache = run / "run.sqlite", run / "eval_cache" / "eval_cache.sqlite"
    if not (db.exists() and cache.exists()):
        return 0, 0, 0
    try:
        con = _ro(db)
        try:
            con.execute("BEGIN")
            nid = con.execute("SELECT COALESCE(MAX(next_id), 0) FROM checkpoints").fetchone()[0]
            stored = {r[0] for r in con.execute("SELECT key FROM evaluations WHERE candidate_id >= ?", (nid,))}
            known = {r[0] for r in con.execute("SELECT key FROM evaluations")}
            batch = {r[0] for r in con.execute("SELECT key FROM candidates WHERE id >= ? AND state = 'ok'",
                                               (nid,))}
        finally:
            con.close()
        con = _ro(cache)
        try:
            cached = {r[0] for r in con.execute("SELECT key FROM results")}
        finally:
            con.close()
    except sqlite3.Error:
        return 0, 0, 0
    waiting = batch - known
    return len(stored), len(waiting - cached), len(waiting & cached)


def _ranking(run: Path) -> list[tuple]:
    from search.core import RunView
    view = RunView(run)
    try:
        return [(c["id"], c["key"], c["level"], round(c["score"], 9)) for c in view.ranked()]
    finally:
        view.close()


def _all_rows(db: Path) -> list[tuple]:
    return _rows(db, "seq, candidate_id, key, fidelity, score, cost, seconds, created, result")


@pytest.mark.parametrize("executor", ["inprocess", pytest.param("pool", marks=pytest.mark.slow)])
def test_kill_mid_batch_keeps_each_finished_training_and_resume_does_not_retrain_it(tmp_path, executor):
    """In process, results arrive in batch order; in the pool (2 workers) out of order, so the
    killed batch's stored results need not be a prefix of it."""
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "camp.toml").write_text(small_rule_campaign("stream", executor=executor, seed=11, budget=STREAM_BUDGET,
                                                         batch=5)
                                     + ("[evaluator]\nworkers = 2\n" if executor == "pool" else ""))
        (d / "driver.py").write_text(DRIVER)
    reference = _driver(b)                    # uninterrupted, same seed
    proc = _driver(a)
    run = a / "runs" / "stream"
    db = run / "run.sqlite"
    deadline = time.time() + 120
    # wait until a generation's batch (5 candidates, trained one after another) is part-way done:
    # some of its results already in the run store while others are still training
    while proc.poll() is None and time.time() < deadline:
        stored, training, _ = _mid_batch(run)
        if stored >= 1 and training >= 1:
            break
        time.sleep(0.005)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    stored, training, cached_only = _mid_batch(run)
    assert stored >= 1 and training >= 1, \
        f"the kill did not land inside a batch ({stored} of its results stored, {training} training)"
    before = _all_rows(db)
    assert len(before) < STREAM_BUDGET

    out, _ = _driver(a, "--resume").communicate(timeout=300)
    ref_out, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_out
    after = _all_rows(db)
    # every result stored before the kill is still there, untouched (same time stamps: not rewritten)
    assert after[: len(before)] == before
    assert len(after) == STREAM_BUDGET and sum(r[5] for r in after) == STREAM_BUDGET, out
    # ... and none of them was trained again: the resumed run trained exactly the rest
    ref_rows = _all_rows(b / "runs" / "stream" / "run.sqlite")
    assert _trained(ref_out) == len(ref_rows) == STREAM_BUDGET
    # (a result that reached the evaluator's cache just before the kill, but not the store, is a
    # cache hit on resume: also not retrained)
    assert _trained(out) == STREAM_BUDGET - len(before) - cached_only, out
    con = _ro(db)
    resumed = con.execute("SELECT message FROM events WHERE kind='resumed'").fetchall()
    con.close()
    assert resumed and f"({stored} finished evaluation(s) of the unfinished generation kept)" in resumed[-1][0]
    # the campaign is the uninterrupted one: same evaluations (in the same order when they arrive in
    # order), same ranking
    if executor == "inprocess":
        assert [r[:4] for r in ref_rows] == [r[:4] for r in after]
    ref_rows, after = sorted(ref_rows, key=lambda r: r[1]), sorted(after, key=lambda r: r[1])
    assert [r[1:4] for r in ref_rows] == [r[1:4] for r in after]
    assert all(abs(x[4] - y[4]) <= 1e-9 * max(1.0, abs(x[4])) for x, y in zip(ref_rows, after))
    assert _ranking(a / "runs" / "stream") == _ranking(b / "runs" / "stream")
