"""The operator bandit in real campaigns (real training, scripted LLM): a backend that proposes a
known-better rule earns the LLM a larger share, one that returns garbage is pushed to its floor,
and a run killed mid-generation resumes to exactly the uninterrupted run (bandit state included)."""
from __future__ import annotations

import json

import pytest

from search.core import Engine, RunStore, parse_campaign
from search.llm import ScriptedLLM

LLM_OPS = ("llm_mutate", "llm_crossover")


def campaign(name: str, algorithm: str = "ucb", budget: int = 40, **over):
    d = {"name": name, "tasks": ["quadratic"], "fidelities": ["tiny"], "executor": "inprocess", "eval_seeds": [0],
         "lrs": [0.003, 0.01, 0.03, 0.1, 0.3], "seed_rules": ["sgd_momentum"], "random_seed": 2,
         "budget": {"evaluations": budget}, "search": {"population": 6, "tournament": 2, "batch_size": 4},
         "operators": {"llm_share": 0.2, "bandit": {"algorithm": algorithm, "floor": 0.03, "cost": "units",
                                                    "llm_call_units": 0.5, "exploration": 0.5,
                                                    "share_of": "children"}},
         "llm": {}, "simplify": {"enabled": False}, "funnel": {"mode": "quantile"}}
    d.update(over)
    return parse_campaign(d, f"<test {name}>")


def better_rule(req) -> str:
    """An Adagrad-style rule (it beats the SGD-momentum seed on the quadratic), new every time."""
    eps = f"{1 + req.seed % 9973}e-12"
    return (f"```python\ndef r(w, g, s, lr, eps={eps}):\n    s = s + g * g\n    w = w - lr * g / (sqrt(s) + eps)\n"
            f"    return w, s\n```")


def garbage(req) -> str:
    return "I would rather not write code today."


def run(tmp_path, c, llm, evaluator=None):
    e = Engine(c, tmp_path / c.name, llm=llm, evaluator=evaluator)
    try:
        e.run()
        return e.bandit.state_dict()
    finally:
        e.close()


def llm_shares(state) -> list[float]:
    """The LLM operators' total share in each generation."""
    return [sum(sh.get(o, 0.0) for o in LLM_OPS) for _g, sh in state["history"]]


@pytest.mark.parametrize("algorithm", ["ucb", "thompson"])
def test_a_backend_with_better_rules_earns_a_larger_share(tmp_path, algorithm):
    good = run(tmp_path / "good", campaign(f"good_{algorithm}", algorithm, budget=60), ScriptedLLM(better_rule))
    bad = run(tmp_path / "bad", campaign(f"bad_{algorithm}", algorithm, budget=60), ScriptedLLM(garbage))
    assert good["arms"]["llm_mutate"]["improved"] > 0 and bad["arms"]["llm_mutate"]["improved"] == 0
    g, b = llm_shares(good), llm_shares(bad)
    assert max(g) > g[0] + 0.1                                   # the LLM's share rose from where it started
    mean = lambda xs: sum(xs[2:]) / len(xs[2:])                  # noqa: E731 - after the first two generations
    assert mean(g) > 1.8 * mean(b)


def test_garbage_falls_to_the_floor(tmp_path):
    state = run(tmp_path, campaign("garbage", "ucb", budget=48), ScriptedLLM(garbage))
    last = state["history"][-1][1]
    assert last["llm_mutate"] == pytest.approx(0.03) and last["llm_crossover"] == pytest.approx(0.03)
    assert state["arms"]["llm_mutate"]["valid"] == 0 and state["arms"]["llm_mutate"]["children"] > 0
    assert sum(last.values()) == pytest.approx(1.0)


class Crash(BaseException):
    """Stands in for SIGKILL: nothing catches it, the store keeps what was written."""


class CrashingEvaluator:
    """The campaign's evaluator, dying after the first result of its ``at``-th batch."""

    def __init__(self, inner, at: int):
        self.inner, self.at, self.calls = inner, at, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def evaluate(self, cands, fidelity, on_result=None):
        self.calls += 1
        if self.calls < self.at:
            return self.inner.evaluate(cands, fidelity, on_result=on_result)

        def then_die(j, r):
            if on_result is not None:
                on_result(j, r)
            raise Crash()
        return self.inner.evaluate(cands, fidelity, on_result=then_die)


def dump(run_dir):
    st = RunStore(run_dir, readonly=True)
    try:
        cands = [(c["id"], c["text"], tuple(c["parents"]), c["operator"], c["state"]) for c in st.candidates()]
        evs = [(e["seq"], e["candidate_id"], e["key"], e["fidelity"], e["score"]) for e in st.evaluations()]
        calls = [(c["purpose"], c["request"], c["reply"]) for c in st.llm_calls()]
        ck = st.last_checkpoint()["state"]
        return cands, evs, calls, json.dumps(ck["operators"], sort_keys=True), json.dumps(ck.get("pending"))
    finally:
        st.close()


def killed_and_resumed(tmp_path, c, llm_factory, at: int):
    first = Engine(c, tmp_path / c.name, llm=llm_factory())
    first.evaluator = CrashingEvaluator(first.evaluator, at)
    with pytest.raises(Crash):
        first.run()
    first.close()
    again = Engine(c, tmp_path / c.name, llm=llm_factory(), resume=True)
    try:
        assert again.generation > 0 and sum(a["children"] for a in again.bandit.state_dict()["arms"].values())
        again.run()
    finally:
        again.close()
    return dump(tmp_path / c.name)


@pytest.mark.parametrize("algorithm", ["ucb", "thompson"])
def test_kill_and_resume_continues_the_bandit_exactly(tmp_path, algorithm):
    c = campaign(f"resume_{algorithm}", algorithm, budget=30)
    run(tmp_path / "ref", c, ScriptedLLM(better_rule))
    ref = dump(tmp_path / "ref" / c.name)
    got = killed_and_resumed(tmp_path / "cut", c, lambda: ScriptedLLM(better_rule), at=5)
    assert got[0] == ref[0] and got[1] == ref[1] and got[2] == ref[2]
    assert got[3] == ref[3]                                      # bandit counters, RNG and share history


def test_fixed_mode_is_the_default_and_draws_as_before(tmp_path):
    c = parse_campaign({"name": "plain", "tasks": ["quadratic"]}, "<test>")
    assert c.operators.bandit.algorithm == "fixed" and c.search.pipeline is False
    from search.core import CampaignError
    with pytest.raises(CampaignError, match="unknown operator 'llm_mutat'"):
        parse_campaign({"name": "typo", "operators": {"bandit": {"floors": {"llm_mutat": 0.1}}}}, "<test>")
    with pytest.raises(ValueError, match="floors .* sum to"):
        Engine(campaign("floors", "ucb", operators={"bandit": {"algorithm": "ucb", "floor": 0.5}}), tmp_path / "f",
               llm=ScriptedLLM(garbage))


def test_show_and_report_list_operator_statistics(tmp_path):
    import sqlite3

    from search.cli.results import show_text
    from search.core import RunView
    from search.report import build_html
    c = campaign("shown", "ucb", budget=24)
    run(tmp_path, c, ScriptedLLM(better_rule))
    text = show_text(tmp_path / c.name)
    assert "operators (ucb; reward = improvement over the best parent at screening, per evaluation unit" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("llm_mutate"))
    children, valid, improved = (int(x) for x in line.split()[1:4])
    assert children >= valid >= improved and children > 0 and "/unit" in line and "->" in line
    view = RunView(tmp_path / c.name)
    try:
        page = build_html(view)
    finally:
        view.close()
    assert "Operator choice (ucb)" in page and "llm_mutate" in page and "id=\"plot-shares\"" in page
    # a run from before the bandit (no state in its checkpoints): counts from its candidates
    db = tmp_path / c.name / "run.sqlite"
    con = sqlite3.connect(db)
    for cid, state in con.execute("SELECT id, state FROM checkpoints").fetchall():
        s = json.loads(state)
        s.pop("operators", None)
        con.execute("UPDATE checkpoints SET state = ? WHERE id = ?", (json.dumps(s), cid))
    con.commit()
    con.close()
    old = show_text(tmp_path / c.name)
    assert "no bandit state" in old and "n/a" in old
    assert next(ln for ln in old.splitlines() if ln.strip().startswith("llm_mutate")).split()[1] == str(children)


def test_a_run_from_before_the_bandit_resumes(tmp_path):
    """Its stored campaign lacks [operators.bandit] and search.pipeline, its checkpoints the bandit
    state: it resumes (fields compare as their defaults) and goes on in fixed mode."""
    c = campaign("older", budget=12, operators={"llm_share": 0.2})
    run(tmp_path, c, ScriptedLLM(better_rule))
    st = RunStore(tmp_path / c.name)
    meta = st.get_meta("campaign")
    del meta["operators"]["bandit"], meta["search"]["pipeline"]
    meta["prompt"] = None                                        # a field older models had
    st.set_meta(campaign=meta)
    st.close()
    c.budget.evaluations = 20
    e = Engine(c, tmp_path / c.name, llm=ScriptedLLM(better_rule), resume=True)
    try:
        assert e.run().used == 20
    finally:
        e.close()
    changed = campaign("older", budget=20, operators={"llm_share": 0.2, "bandit": {"algorithm": "ucb"}})
    with pytest.raises(Exception, match="fields: operators"):
        Engine(changed, tmp_path / c.name, llm=ScriptedLLM(better_rule), resume=True)


def test_prompt_campaign_bandit_chooses_between_its_operators(tmp_path):
    """A prompt algorithm's LLM operator and the word edit are arms too (``Context.choose_for``)."""
    from evaluators import PromptEvaluator
    from proxies.prompts import get_prompt_task
    from test_prompt_search import SIZES, proposer, task_model
    from test_prompt_search import campaign as prompt_campaign
    c = prompt_campaign("ga")
    c.operators.bandit = c.operators.bandit.model_copy(update={"algorithm": "ucb", "cost": "units"})
    c.budget.evaluations, c.budget.llm_calls = 24, 16
    ev = PromptEvaluator(get_prompt_task("sum", sizes=SIZES), ScriptedLLM(task_model), minibatch_size=4)
    e = Engine(c, tmp_path / "pga", evaluator=ev, llm=ScriptedLLM(proposer))
    try:
        e.run()
        state = e.bandit.state_dict()
    finally:
        e.close()
    arms = state["arms"]
    assert arms["prompt_ga"]["children"] > 0 and arms["prompt_edit"]["children"] > 0
    assert any("prompt_ga" in sh and "prompt_edit" in sh for _g, sh in state["history"])
    assert all(abs(sum(sh.values()) - 1) < 1e-6 for _g, sh in state["history"])
