"""The prompt campaign through the command line: run, show, export (text and JSON), report, --resume.

Both models are the scripted backend configured from files, as a user would for a reproducible
demo: the task is the user's own JSONL file, the task model answers from a reply list and the
proposer from a per-purpose reply file."""
import json
import re

from search.cli import main

TOML = """
name = "cli-prompts"
kind = "prompt"
random_seed = 3

[prompt]
task_file = "capitals.jsonl"
metric = "contains"
description = "Name the capital city of the country."
initial_prompt = "Say something."
algorithm = "{alg}"
minibatch = 3
test_top = 2
task_model = {{ backend = "scripted", replies = "task_replies.json" }}

[llm]
backend = "scripted"
replies = "proposer.json"

[search]
population = 3
batch_size = 2

[budget]
evaluations = {budget}
llm_calls = 20
fidelity_cost = {{ minibatch = 1.0, dev = 0.01 }}
"""


def setup(tmp_path, alg="opro", budget=8):
    rows = [{"input": f"country {i}", "output": "paris" if i % 2 else "rome"} for i in range(16)]
    (tmp_path / "capitals.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "task_replies.json").write_text(json.dumps(["It is Paris.", "Rome, I think.", "No idea."]))
    (tmp_path / "proposer.json").write_text(json.dumps({
        "prompt-opro": ["<prompt>Name the capital city.</prompt>", "Sure!", "```\nGive the capital.\n```",
                        "<prompt>Answer with one city.</prompt>"],
        "*": ["<prompt>Tell me the capital.</prompt>", "", "Capital please."]}))
    f = tmp_path / "prompts.toml"
    f.write_text(TOML.format(alg=alg, budget=budget))
    return f


def test_run_show_export_report_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = setup(tmp_path)
    run_dir = tmp_path / "runs" / "cli-prompts"
    assert main(["run", str(f), "--plain", "--budget", "4"]) == 0
    assert main(["run", str(f), "--plain", "--resume"]) == 0          # continues to the full budget
    capsys.readouterr()
    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"test accuracy initial \d+\.\d% -> best \d+\.\d%", out) and "tuned AdamW" not in out
    assert main(["export", str(run_dir), "-o", str(tmp_path / "best.txt")]) == 0
    assert main(["export", str(run_dir), "-o", str(tmp_path / "best.json")]) == 0
    text = (tmp_path / "best.txt").read_text().strip()
    data = json.loads((tmp_path / "best.json").read_text())
    assert text and data["prompt"] == text and data["task"] == "capitals"
    assert data["test_accuracy"] is not None and data["initial"]["text"] == "Say something."
    assert main(["report", str(run_dir)]) == 0
    html = (run_dir / "report.html").read_text()
    assert "Prompt optimization" in html and "Best dev accuracy over iterations" in html
    from search.core import RunView
    v = RunView(run_dir)
    try:
        assert sum(e["cost"] for e in v.evaluations) <= 8 + 1e-6
        assert v.store.get_meta("prompt_final")["algorithm"] == "opro"
    finally:
        v.close()


def test_bad_prompt_campaign_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = setup(tmp_path)
    f.write_text(f.read_text().replace('task_file = "capitals.jsonl"', 'task_file = "missing.jsonl"'))
    assert main(["run", str(f), "--plain"]) == 1
    assert "missing.jsonl" in capsys.readouterr().err


def test_example_campaign_file_is_valid():
    from pathlib import Path

    from search.core import load_campaign
    c = load_campaign(Path(__file__).resolve().parents[1] / "examples" / "prompts.toml")
    assert c.kind == "prompt" and c.search.strategy == "evoprompt_ga"
    assert c.options.task == "plural" and c.options.metric == "contains"
