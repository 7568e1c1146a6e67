"""LLM operators in the engine with the scripted backend: invalid replies are counted with their
reasons, one repair is tried, a failing backend never stops the campaign, and the same seed gives
the same campaign."""
from __future__ import annotations

import json

import pytest

from evaluators.base import WORST_SCORE
from search.core import RunStore, parse_campaign
from search.llm import LLM, ChatResponse, scripted
from support import run_engine


def campaign(name, **over):
    d = {"name": name, "tasks": ["quadratic"], "fidelities": ["tiny"], "executor": "inprocess",
         "eval_seeds": [0], "lrs": [0.003, 0.03, 0.3], "seed_rules": ["sgd_momentum"],
         "budget": {"evaluations": 14}, "search": {"population": 5, "tournament": 2, "batch_size": 3},
         "operators": {"llm_share": 0.7}, "llm": {}, "simplify": {"enabled": False},
         "funnel": {"mode": "quantile"}}   # the evaluation counts below are the quantile funnel's
    d.update(over)
    return parse_campaign(d, f"<test {name}>")


def valid(seed: int) -> str:
    c = round(0.01 + (seed % 997) / 1000, 4)
    return (f"Here you go:\n```python\ndef r(w, g, m, lr, beta=0.9):\n    m = interp(g, m, beta)\n"
            f"    w = w - lr * (m + {c} * g)\n    return w, m\n```\nMomentum plus a bit of gradient.")


def reply(req) -> str:
    """Deterministic: a function of the request only (its seed, whether it is a repair)."""
    if len(req.messages) > 2:                       # the repair turn: fixes the missing return only
        fixable = "return" not in req.messages[2].content
        return valid(req.seed + 1) if fixable else "Sorry, I still cannot."
    k = req.seed % 4
    if k == 0:
        return valid(req.seed)
    if k == 1:
        return "I am not sure what you mean."
    if k == 2:
        return "```python\ndef r(w, g, lr):\n    w = w - lr * g.sign()\n    return w\n```"
    return "```python\ndef r(w, g, lr):\n    w = w - lr * g\n```"  # missing return -> repaired


def run(tmp_path, c, llm):
    return run_engine(c, tmp_path / c.name, llm=llm)


def test_invalid_replies_are_recorded_with_reasons_and_repair_is_tried(tmp_path):
    summary, st = run(tmp_path, campaign("garbage"), scripted.ScriptedLLM(reply))
    assert st.count_search_evaluations() == 14 and summary.best_score > WORST_SCORE
    cands = st.candidates()
    llm_cands = [c for c in cands if c["operator"].startswith("llm_")]
    invalid = [c for c in llm_cands if c["state"] == "invalid"]
    ok = [c for c in llm_cands if c["state"] == "ok"]
    assert invalid and ok
    reasons = " | ".join(c["reason"] for c in invalid)
    assert "no code found" in reasons or "attribute" in reasons.lower()
    assert all(c["reason"] and c["raw_reply"] for c in invalid)       # reason and raw reply kept
    assert any("after repair" in c["reason"] or "----- repair -----" in (c["raw_reply"] or "") for c in invalid) \
        or any(c["meta"].get("repaired") for c in ok)
    assert any(c["meta"].get("repaired") for c in ok)                  # a repair succeeded
    calls = st.llm_calls()
    assert calls and any(c["purpose"].endswith(":repair") for c in calls)
    assert all(json.loads(c["request"])["grammar"] == "dsl" for c in calls)


def _dump(st: RunStore):
    cands = [(c["id"], c["text"], tuple(c["parents"]), c["operator"], c["state"], c["reason"], c["raw_reply"])
             for c in st.candidates()]
    evs = [(e["seq"], e["candidate_id"], e["key"], e["fidelity"], e["score"]) for e in st.evaluations()]
    calls = [(c["purpose"], c["request"], c["reply"]) for c in st.llm_calls()]
    return cands, evs, calls


def test_same_seed_and_scripted_llm_give_the_same_campaign(tmp_path):
    _, a = run(tmp_path / "a", campaign("det"), scripted.ScriptedLLM(reply))
    _, b = run(tmp_path / "b", campaign("det"), scripted.ScriptedLLM(reply))
    da, db = _dump(a), _dump(b)
    assert da == db and len(da[0]) >= 14 and da[2]
    _, c = run(tmp_path / "c", campaign("det", random_seed=1), scripted.ScriptedLLM(reply))
    assert _dump(c)[0] != da[0]                                        # and another seed differs


class Broken(LLM):
    name = "broken"

    def __init__(self, mode: str):
        self.mode, self.calls = mode, 0

    def chat(self, requests):
        self.calls += 1
        if self.mode == "raise":
            raise ConnectionError("connection refused")
        return [ChatResponse(error="HTTP 503 from the server") for _ in requests]


@pytest.mark.parametrize("mode", ["raise", "errors"])
def test_failing_backend_falls_back_to_random_operators(tmp_path, mode):
    llm = Broken(mode)
    summary, st = run(tmp_path, campaign(f"broken_{mode}"), llm)
    assert st.count_search_evaluations() == 14 and summary.best_score > WORST_SCORE
    off = st.events("llm_disabled")
    assert off and "random operators" in off[0]["message"]
    assert llm.calls == 3                                               # max_consecutive_errors, then no more
    assert not [c for c in st.candidates() if c["operator"].startswith("llm_") and c["state"] == "invalid"]


def test_llm_call_budget_is_a_hard_cap(tmp_path):
    c = campaign("cap", budget={"evaluations": 14, "llm_calls": 4})
    summary, st = run(tmp_path, c, scripted.ScriptedLLM(reply))
    assert len(st.llm_calls()) <= 4 and summary.llm_calls <= 4
    assert st.count_search_evaluations() == 14
    assert any("budget" in e["message"] for e in st.events("llm_disabled"))


def _replies_file(tmp_path):
    import json as _json
    lines = [valid(k) for k in range(7)] + ["nothing useful", "```python\ndef r(w, g):\n    return w.x\n```"]
    p = tmp_path / "replies.jsonl"
    p.write_text("\n".join(_json.dumps(x) for x in lines) + "\n")
    return p


def test_campaign_llm_table_cache_in_run_dir_and_replay_without_the_backend(tmp_path):
    import shutil
    replies = _replies_file(tmp_path)
    c1 = campaign("rec", llm={"backend": "scripted", "replies": str(replies)})
    _, st1 = run_engine(c1, tmp_path / "rec")
    assert (tmp_path / "rec" / "llm_cache").exists() and st1.llm_calls()
    # replay: the recorded replies serve every request; the backend is not asked (its replies are now garbage)
    shutil.copytree(tmp_path / "rec" / "llm_cache", tmp_path / "replay" / "llm_cache")
    replies.write_text('"garbage"\n')
    c2 = campaign("rec", llm={"backend": "scripted", "replies": str(replies), "cache": "replay"})
    _, st2 = run_engine(c2, tmp_path / "replay")
    assert not st2.events("llm_disabled")
    a, b = _dump(st1), _dump(st2)
    assert a[0] == b[0] and a[1] == b[1]
    assert [x[2] for x in a[2]] == [x[2] for x in b[2]]


def test_bad_llm_table_is_a_campaign_error():
    from search.core import CampaignError
    with pytest.raises(CampaignError, match="llm.backnd"):
        campaign("badllm", llm={"backnd": "local"})


def test_the_backends_own_cap_stops_llm_use_not_the_campaign(tmp_path):
    """The accounting wrapper's cap (``[llm] max_calls``) marks refused replies ``budget_spent``: the
    engine stops using the LLM at once (no retry streak) and the campaign goes on with random operators."""
    c = campaign("ownc", llm={"backend": "scripted", "replies": [valid(k) for k in range(8)], "max_calls": 2},
                 budget={"evaluations": 14})
    summary, st = run(tmp_path, c, None)
    assert st.count_search_evaluations() == 14 and len(st.llm_calls()) >= 2
    disabled = st.events("llm_disabled")
    assert len(disabled) == 1 and "budget is spent" in disabled[0]["message"]
    assert "max_calls 2" in disabled[0]["message"]
