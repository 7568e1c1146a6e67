"""Prompt selection on evidence (search.prompts.select): paired bootstrap intervals over the same dev
examples, and the race that stops clearly worse finalists on the minibatch and gives the others the
whole dev split before the initial prompt is replaced. Scripted task model, real engine and evaluator."""
import pytest

from evaluators import Candidate, PromptEvaluator
from proxies.prompts import get_prompt_task
from search.core import Engine, Proposal, parse_campaign
from search.llm import ScriptedLLM
from search.prompts import paired_interval, race_to_replace

SIZES = {"train": 4, "dev": 16, "test": 8}


def task_model(req):
    """Right on every example for "State the sum.", on first numbers above 30 for the initial prompt
    ("Look at the numbers.": 13 of the 16 dev examples), on those and one more (the first dev example,
    "14 69") for "Sum only the first.", never otherwise."""
    q = req.messages[-1].content
    instr, x = q.split("\n\nInput: ", 1)
    x = x.split("\n")[0]
    a, b = map(int, x.split())
    right = ("State the sum." in instr or ("Look at the numbers." in instr and a > 30)
             or ("Sum only the first." in instr and (a > 30 or x == "14 69")))
    return str(a + b) if right else f"{a} and {b}"


def test_paired_interval_is_paired_and_deterministic():
    same = paired_interval([1, 0, 1, 1], [1, 0, 1, 1])
    assert (same.gain, same.lo, same.hi, same.n) == (0.0, 0.0, 0.0, 4)
    clear = paired_interval([1] * 12, [1, 0] * 6)
    assert clear.gain == 0.5 and clear.lo > 0 and clear == paired_interval([1] * 12, [1, 0] * 6)
    # the same accuracies unpaired would overlap; paired, a one-example difference is not evidence
    one = paired_interval([1, 1, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0])
    assert one.gain == 0.125 and one.lo <= 0 < one.hi
    with pytest.raises(ValueError, match="same examples"):
        paired_interval([1, 0], [1])


def test_the_race_drops_the_clearly_worse_on_the_minibatch_and_adopts_only_above_zero(tmp_path):
    c = parse_campaign({"name": "race", "kind": "prompt", "random_seed": 1,
                        "prompt": {"task": "sum", "algorithm": "rewrite", "sizes": SIZES, "minibatch": 8,
                                   "fill": False, "test_top": 1},
                        "search": {"population": 3, "batch_size": 2}, "budget": {"evaluations": 3}})
    ev = PromptEvaluator(get_prompt_task("sum", sizes=SIZES), ScriptedLLM(task_model), minibatch_size=8)
    eng = Engine(c, tmp_path / "run", evaluator=ev)
    try:
        eng.run()
        initial = next(i for i in eng.individuals.values() if i.meta.get("seed") == "initial")
        assert initial.text == "Look at the numbers." and "dev" in initial.results
        made = {}
        for text in ("State the sum.", "Say nothing useful.", "Sum only the first."):
            ind = eng._make_individual(text, ev.key(Candidate(kind="prompt", text=text)), Proposal(text, "test", ()))
            eng._evaluate([ind], "minibatch", phase="simplify")     # screened only: no dev scores yet
            assert "dev" not in ind.results
            made[text] = ind
        good, bad = made["State the sum."], made["Say nothing useful."]
        requests = ev.requests
        sel = race_to_replace(eng, [good, bad], initial, 0.1)
        rows = {r["id"]: r for r in sel["finalists"]}
        assert rows[bad.id]["stopped"] == "minibatch" and rows[bad.id]["minibatch"]["hi"] < 0
        assert "dev" not in bad.results                              # no dev examples spent on it
        assert "dev" in good.results and good.meta["dev_race"]["dev"] == 1.0
        assert ev.requests - requests == SIZES["dev"]                # the good one's dev split, once
        assert sel["adopted"] == good.id and not sel["kept_initial"] and rows[good.id]["dev"]["lo"] > 0
        # nothing better on paired evidence: the initial prompt stays
        kept = race_to_replace(eng, [made["Sum only the first."], bad], initial, 0.1)
        assert kept["kept_initial"] and kept["adopted"] is None and "kept the initial prompt" in kept["why"]
    finally:
        eng.close()

