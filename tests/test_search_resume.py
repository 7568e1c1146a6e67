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

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 24

CAMPAIGN = f"""
name = "killme"
seed_rules = ["sgd_momentum"]
tasks = ["quadratic"]
fidelities = ["small"]
executor = "inprocess"
eval_seeds = [0]
lrs = [0.003, 0.03, 0.3]
random_seed = 7
[budget]
evaluations = {BUDGET}
[search]
population = 6
tournament = 2
batch_size = 2
[simplify]
enabled = false
"""


def _env():
    return {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _cli(tmp: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search.cli", "run", "camp.toml", "--plain", *args], cwd=tmp,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT seq, candidate_id, key, fidelity, score, cost FROM evaluations "
                           "ORDER BY seq").fetchall()
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
    assert refused.returncode == 2 and "--resume" in refused.stderr and "--fresh" in refused.stderr

    out, _ = _cli(a, "--resume").communicate(timeout=300)
    after = _rows(db)
    assert after[: len(before)] == before, "a finished evaluation was lost or changed"
    assert len(after) == BUDGET and sum(r[5] for r in after) == BUDGET, out

    ref_out, _ = reference.communicate(timeout=300)
    ref = _rows(b / "runs" / "killme" / "run.sqlite")
    assert [r[:4] for r in ref] == [r[:4] for r in after], "resumed run diverged from the uninterrupted one"
    assert all(abs(x[4] - y[4]) <= 1e-9 * max(1.0, abs(x[4])) for x, y in zip(ref, after))
