"""Few-shot prompt search on the engine, with scripted task and proposer models: demonstration
search (no LLM) finds the demonstrations that help, GA keeps the demonstrations while it edits
the instruction, runs are deterministic, and show / export print the demonstrations."""
import json

from evaluators import PromptEvaluator
from proxies.prompts import decode_prompt, get_prompt_task
from search.cli.results import export_run
from search.core import Engine, RunView, parse_campaign
from search.llm import ScriptedLLM
from search.prompts import prompt_show_lines

SIZES = {"train": 8, "dev": 8, "test": 12}
TASK = get_prompt_task("sum", sizes=SIZES)
GOOD = {TASK.train[i].input for i in (5, 6, 7)}   # the demonstrations that teach the task model


def task_model(req):
    """The more 'good' demonstrations it was shown, the more examples it gets right (all with 3)."""
    shown = [m.content.split("Input: ")[-1].split("\n")[0] for m in req.messages[:-1] if m.role == "user"]
    a, b = map(int, req.messages[-1].content.split("Input: ")[-1].split("\n")[0].split())
    return str(a + b) if (a + b) % 3 < sum(x in GOOD for x in shown) else "no idea"


def proposer(req):
    assert "[demos" not in req.messages[-1].content     # the proposer never sees the encoding
    return "<prompt>Add the numbers carefully.</prompt>"


def run(tmp_path, algorithm, name="d", seed=1, **extra):
    c = parse_campaign({
        "name": name, "kind": "prompt", "random_seed": seed,
        "prompt": {"task": "sum", "algorithm": algorithm, "sizes": SIZES, "minibatch": 4, "demos": 2,
                   "fill": False, "test_top": 1, "select_alpha": 1.0, **extra},
        "search": {"population": 3, "batch_size": 2}, "funnel": {"promote_fraction": 0.5},
        "budget": {"evaluations": 16, "llm_calls": 6, "fidelity_cost": {"minibatch": 1, "dev": 0.01}}})
    ev = PromptEvaluator(TASK, ScriptedLLM(task_model), minibatch_size=4)
    eng = Engine(c, tmp_path / name, evaluator=ev, llm=ScriptedLLM(proposer))
    try:
        eng.run()
        final = eng.store.get_meta("prompt_final")
        cands = eng.store.candidates()
    finally:
        eng.close()
    return final, cands


def test_demo_search_finds_the_helpful_demonstrations_from_train_only(tmp_path):
    final, cands = run(tmp_path, "demos")
    ops = {c["operator"] for c in cands}
    assert {"prompt_demo_edit", "prompt_demo_cross"} & ops and not ops & {"prompt_ga", "prompt_rewrite"}
    for c in (c for c in cands if c["text"]):
        instr, demos = decode_prompt(c["text"])
        assert instr == TASK.initial_prompt and all(0 <= i < len(TASK.train) for i in demos)
    best, ini = final["top_by_dev"], final["initial"]
    assert len(decode_prompt(ini["text"])[1]) == 2          # the seed starts with k = 2 demonstrations
    n_good = (lambda t: sum(TASK.train[i].input in GOOD for i in decode_prompt(t)[1]))
    assert n_good(best["text"]) > n_good(ini["text"])
    assert best["dev"] > ini["dev"] and best["test"] > ini["test"]
    again, _ = run(tmp_path, "demos", name="d2")            # same seed: same search
    assert again["top_by_dev"]["text"] == best["text"]
    other, _ = run(tmp_path, "demos", name="d3", seed=2)    # another seed draws other starting demos
    assert other["initial"]["text"] != ini["text"]


def test_ga_edits_the_instruction_and_keeps_the_demonstrations(tmp_path):
    final, cands = run(tmp_path, "ga")
    by_id = {c["id"]: c for c in cands}
    llm_children = [c for c in cands if c["operator"] == "prompt_ga" and c["text"]]
    assert llm_children
    for c in llm_children:
        parent = by_id[c["parents"][0]]
        assert decode_prompt(c["text"])[1] == decode_prompt(parent["text"])[1]
        assert decode_prompt(c["text"])[0].startswith("Add the numbers carefully")


def test_show_and_export_print_instruction_and_demonstrations(tmp_path):
    final, _ = run(tmp_path, "demos")
    view = RunView(tmp_path / "d")
    try:
        text = "\n".join(prompt_show_lines(view))
    finally:
        view.close()
    best_idx = decode_prompt(final["best"]["text"])[1]
    assert "best prompt's demonstrations (train split, in order)" in text
    assert f"#{best_idx[0]} {TASK.train[best_idx[0]].input!r} -> {TASK.train[best_idx[0]].output!r}" in text
    out = tmp_path / "best.json"
    export_run(tmp_path / "d", 1, out)
    data = json.loads(out.read_text())
    assert data["instruction"] == TASK.initial_prompt
    assert [d["index"] for d in data["demonstrations"]] == list(best_idx)
    assert data["demonstrations"][0]["output"] == TASK.train[best_idx[0]].output
    txt = tmp_path / "best.txt"
    export_run(tmp_path / "d", 1, txt)
    assert txt.read_text().startswith(TASK.initial_prompt + "\n\nExamples") and "Output: " in txt.read_text()
