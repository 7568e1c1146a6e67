"""Several prompt runs compared (``optforge show RUN RUN ...``, ``optforge report RUN RUN ...``), the
prompt lines of a single ``optforge show``, and the strict accuracy kept next to a lenient metric.

The runs are real engine runs with scripted models: a task model that answers in a sentence
("The sum is 7.") when the instruction says "sum" and "no idea" otherwise, so the lenient
``contains`` metric and the strict normalized match disagree in a known way."""
import json
import re

import pytest

from evaluators import PromptEvaluator
from proxies.prompts import get_prompt_task, match
from search.cli import main
from search.core import Engine, RunStore, RunView, parse_campaign
from search.llm import ScriptedLLM
from search.prompts import CompareError, calls_curve, load_rows, run_row

SIZES = {"train": 4, "dev": 8, "test": 12}


def task_model(req):
    q = req.messages[-1].content
    instr, x = q.split("\n\nInput: ", 1)
    a, b = map(int, x.split("\n")[0].split())
    if "sum" not in instr.lower():
        return "no idea"
    # a sentence (strict match fails, "contains" passes) unless the prompt asks for only the number
    return str(a + b) if "only" in instr.lower() else f"The sum is {a + b}."


def proposer(req):
    if req.purpose in ("prompt-ga", "prompt-opro"):
        return f"<prompt>Give the sum ({req.seed % 97}).</prompt>"
    return f"<prompt>Look at both numbers ({req.seed % 89}).</prompt>"


def make_run(tmp_path, algorithm, metric="contains"):
    c = parse_campaign({
        "name": f"cmp-{algorithm}", "kind": "prompt", "random_seed": 2,
        "prompt": {"task": "sum", "algorithm": algorithm, "sizes": SIZES, "minibatch": 4, "metric": metric,
                   "seed_prompts": ["Add them."], "fill": False, "test_top": 2},
        "search": {"population": 2, "batch_size": 2},
        "budget": {"evaluations": 6, "llm_calls": 4, "fidelity_cost": {"minibatch": 1, "dev": 0.01}}})
    task = get_prompt_task("sum", sizes=SIZES)
    ev = PromptEvaluator(task, ScriptedLLM(task_model), minibatch_size=4, metric=metric)
    run_dir = tmp_path / algorithm
    eng = Engine(c, run_dir, evaluator=ev, llm=ScriptedLLM(proposer))
    try:
        summary = eng.run()
    finally:
        eng.close()
    return run_dir, summary


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    return {alg: make_run(tmp, alg) for alg in ("ga", "opro")}


def test_strict_accuracy_is_kept_next_to_the_campaign_metric(runs):
    run_dir, _ = runs["opro"]
    v = RunView(run_dir)
    try:
        fin = v.store.get_meta("prompt_final")
        task = get_prompt_task("sum", sizes=SIZES)
        for row in fin["tested"]:
            cand = v.by_id[row["id"]]
            preds = cand["meta"]["test"]["predictions"]
            want_contains = sum(match(p, e.targets, "contains") for p, e in zip(preds, task.test)) / len(task.test)
            want_strict = sum(match(p, e.targets, "normalized") for p, e in zip(preds, task.test)) / len(task.test)
            assert row["test"] == pytest.approx(want_contains)
            assert row["test_normalized"] == pytest.approx(want_strict)
        best = fin["best"]
        assert "sum" in best["text"].lower() and best["test"] == 1.0 and best["test_normalized"] == 0.0
        assert fin["initial"]["test"] == 0.0
    finally:
        v.close()


def test_calls_curve_is_monotone_and_counts_proposer_calls(runs):
    run_dir, summary = runs["ga"]
    v = RunView(run_dir)
    try:
        curve = calls_curve(v)
        calls = [k for k, _ in curve]
        assert calls == sorted(calls) and calls[-1] == summary.llm_calls == len(v.store.llm_calls())
        vals = [b for _, b in curve if b is not None]
        assert vals == sorted(vals) and vals[-1] == max(c["results"]["dev"].score for c in v.individuals
                                                        if "dev" in c["results"])
        assert curve[0][0] == 0                     # the seed prompts come before any call
    finally:
        v.close()


def test_show_several_prompt_runs_side_by_side(runs, capsys):
    assert main(["show", str(runs["ga"][0]), str(runs["opro"][0])]) == 0
    out = capsys.readouterr().out
    rows = load_rows([runs["ga"][0], runs["opro"][0]])
    for r in rows:
        line = next(ln for ln in out.splitlines() if ln.startswith(f"| sum | contains | {r['algorithm']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[3] == f"{100 * r['initial_test']:.1f}" and cells[4] == f"{100 * r['best_test']:.1f}"
        assert cells[7].startswith(f"{r['proposer_calls']} (")
    assert re.search(r"sum\s+opro\s+0:", out)


def test_report_several_prompt_runs(runs, tmp_path, capsys):
    out = tmp_path / "cmp.html"
    assert main(["report", str(runs["ga"][0]), str(runs["opro"][0]), "-o", str(out)]) == 0
    html = out.read_text()
    assert "Best dev accuracy over proposer calls, per optimizer" in html and "data:image/png;base64" in html
    assert html.count("<td>sum</td>") == 2


def test_single_prompt_show_has_test_lines_not_adamw(runs, capsys):
    assert main(["show", str(runs["opro"][0])]) == 0
    out = capsys.readouterr().out
    assert "tuned AdamW" not in out
    assert re.search(r"test accuracy initial 0\.0% -> best 100\.0%", out)
    assert "strict normalized exact match on the same predictions: initial 0.0% -> best 0.0%" in out


def test_comparing_with_a_non_prompt_run_is_a_clear_error(runs, tmp_path, capsys):
    st = RunStore(tmp_path / "rulerun")
    st.set_meta(kind="rule", campaign={"name": "r"}, fidelities=["small"], status="done")
    st.close()
    assert main(["show", str(runs["ga"][0]), str(tmp_path / "rulerun")]) == 1
    assert "only prompt runs can be compared" in capsys.readouterr().err
    v = RunView(tmp_path / "rulerun")
    try:
        with pytest.raises(CompareError, match="'rule' run"):
            run_row(v)
    finally:
        v.close()


def test_unfinished_run_is_marked(runs, tmp_path):
    import shutil
    d = tmp_path / "copy"
    shutil.copytree(runs["ga"][0], d)
    st = RunStore(d)
    st.conn.execute("DELETE FROM meta WHERE key = 'prompt_final'")
    st.close()
    row = load_rows([d])[0]
    assert not row["finished"] and row["best_test"] is None
    assert json.dumps(row)  # serializable for bench results
