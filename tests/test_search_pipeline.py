"""Pipelined generations (``[search] pipeline = true``): the next batch's LLM requests are
answered in the background while the current batch trains; the run is reproducible, its parents
lag one generation as documented, the LLM call cap holds on the backend too, and a run killed
mid-generation resumes to exactly the uninterrupted pipelined run."""
from __future__ import annotations

import pytest

from search.core import Engine, RunStore, parse_campaign
from search.llm import ScriptedLLM
from test_search_bandit import Crash, CrashingEvaluator, better_rule, dump  # noqa: I001


def reply(req) -> str:
    """Deterministic: valid rules, garbage and a repairable reply, by the request's seed."""
    if len(req.messages) > 2:                          # the repair turn
        return better_rule(req)
    k = req.seed % 3
    if k == 0:
        return better_rule(req)
    if k == 1:
        return "no idea"
    return "```python\ndef r(w, g, lr):\n    w = w - lr * g\n```"   # no return: repaired


def campaign(name: str, budget: int = 32, bandit: str = "fixed", **over):
    d = {"name": name, "tasks": ["quadratic"], "fidelities": ["tiny", "small"], "executor": "inprocess",
         "eval_seeds": [0], "lrs": [0.003, 0.03, 0.3], "seed_rules": ["sgd_momentum"], "random_seed": 4,
         "budget": {"evaluations": budget}, "search": {"population": 6, "tournament": 2, "batch_size": 4,
                                                      "pipeline": True},
         "operators": {"llm_share": 0.5, "bandit": {"algorithm": bandit, "cost": "units",
                                                                    "share_of": "children"}},
         "llm": {}, "simplify": {"enabled": False}, "funnel": {"mode": "quantile"}}
    d.update(over)
    return parse_campaign(d, f"<test {name}>")


def run(run_dir, c, llm):
    e = Engine(c, run_dir, llm=llm)
    try:
        e.run()
        return e
    finally:
        e.close()


def test_pipelined_run_is_reproducible_and_uses_the_prefetch(tmp_path):
    c = campaign("pipe", bandit="ucb")
    a = run(tmp_path / "a", c, ScriptedLLM(reply, latency_s=0.02))
    b = run(tmp_path / "b", c, ScriptedLLM(reply, latency_s=0.02))
    da, db = dump(tmp_path / "a"), dump(tmp_path / "b")
    assert da == db and da[2]
    assert a.prefetch_hits > 0 and a.prefetch_hits == b.prefetch_hits
    st = RunStore(tmp_path / "a", readonly=True)
    try:
        assert st.used_budget() == 32
        assert any(x["purpose"].endswith(":repair") for x in st.llm_calls())   # repairs still go out
    finally:
        st.close()
    seq = run(tmp_path / "seq", campaign("pipe", bandit="ucb", search={"population": 6, "tournament": 2,
                                                                         "batch_size": 4}), ScriptedLLM(reply))
    assert seq.prefetch_hits == 0 and dump(tmp_path / "seq")[0] != da[0]     # opt-in: another run


def test_parents_come_from_before_the_previous_generation(tmp_path):
    run(tmp_path, campaign("lag"), ScriptedLLM(reply))
    st = RunStore(tmp_path, readonly=True)
    try:
        gen = {c["id"]: c["generation"] for c in st.candidates()}
        kids = [c for c in st.candidates() if c["parents"] and c["generation"] >= 2]
        assert kids
        assert all(gen[p] <= c["generation"] - 2 or gen[p] == 0 for c in kids for p in c["parents"])
    finally:
        st.close()


def test_llm_call_cap_holds_on_the_backend(tmp_path):
    llm = ScriptedLLM(reply)
    c = campaign("cap")
    c.budget.llm_calls = 5
    e = run(tmp_path, c, llm)
    assert llm.calls <= 5 and e.llm_calls <= 5


@pytest.mark.parametrize("bandit", ["fixed", "thompson"])
def test_kill_mid_generation_and_resume_matches_the_uninterrupted_run(tmp_path, bandit):
    c = campaign(f"cut_{bandit}", budget=36, bandit=bandit)
    run(tmp_path / "ref" / c.name, c, ScriptedLLM(reply))
    ref = dump(tmp_path / "ref" / c.name)
    first = Engine(c, tmp_path / "cut" / c.name, llm=ScriptedLLM(reply))
    first.evaluator = CrashingEvaluator(first.evaluator, at=6)
    with pytest.raises(Crash):
        first.run()
    first.close()
    st = RunStore(tmp_path / "cut" / c.name, readonly=True)
    pending = st.last_checkpoint()["state"]["pending"]
    st.close()
    assert pending and pending["jobs"]                             # killed with a plan in flight
    again = Engine(c, tmp_path / "cut" / c.name, llm=ScriptedLLM(reply), resume=True)
    try:
        again.run()
    finally:
        again.close()
    assert dump(tmp_path / "cut" / c.name) == ref


def _serve(tmp_path, latency: float):
    """``optforge llm serve`` (scripted replies, injected latency) on a free localhost port."""
    import json
    import re
    import subprocess
    import sys
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([better_rule(type("R", (), {"seed": k})()) for k in range(40)] + ["no idea"]))
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", "llm", "serve", "--backend", "scripted",
                             "--replies", str(replies), "--port", "0", "--latency-s", str(latency)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    m = re.search(r"(http://[\d.]+:\d+\S*)", proc.stdout.readline())
    assert m, "llm serve did not start"
    return proc, m.group(1).rstrip("/")


def test_pipelined_run_against_a_slow_served_endpoint(tmp_path):
    dumps, hits = [], []
    for k in range(2):
        proc, url = _serve(tmp_path, 0.2)
        try:
            c = campaign("served", budget=24, llm={"backend": "openai", "base_url": url, "model": "optforge",
                                                   "structured": "off", "concurrency": 1})
            e = run(tmp_path / f"r{k}", c, None)
            dumps.append(dump(tmp_path / f"r{k}"))
            hits.append(e.prefetch_hits)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert dumps[0] == dumps[1] and dumps[0][2] and hits[0] > 0


# A pipelined campaign in its own process, killed with SIGKILL while a batch trains and the next
# batch's LLM requests are in flight (scripted backend with latency), then resumed.
DRIVER = """
import sys
from search.core import Engine, parse_campaign
from search.llm import ScriptedLLM
sys.path.insert(0, {tests!r})
from test_search_pipeline import campaign, reply

if __name__ == "__main__":
    c = campaign("killed", budget=40)
    e = Engine(c, "run", llm=ScriptedLLM(reply, latency_s=0.3), resume="--resume" in sys.argv)
    try:
        e.run()
    finally:
        e.close()
"""


@pytest.mark.slow
def test_sigkill_during_a_pipelined_generation_then_resume(tmp_path):
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time
    from pathlib import Path
    tests = str(Path(__file__).parent)
    env = {"PYTHONPATH": str(Path(tests).parent), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    for d in ("ref", "cut"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "driver.py").write_text(DRIVER.format(tests=tests))
    ref = subprocess.run([sys.executable, "driver.py"], cwd=tmp_path / "ref", env=env, capture_output=True,
                         text=True, timeout=600)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    proc = subprocess.Popen([sys.executable, "driver.py"], cwd=tmp_path / "cut", env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "cut" / "run" / "run.sqlite"

    def evaluations() -> int:
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                return con.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error:
            return 0
    deadline = time.time() + 300
    while evaluations() < 12 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert evaluations() < 40, "the kill came too late"
    again = subprocess.run([sys.executable, "driver.py", "--resume"], cwd=tmp_path / "cut", env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert dump(tmp_path / "cut" / "run") == dump(tmp_path / "ref" / "run")
