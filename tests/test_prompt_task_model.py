"""The task model is any backend, configured in the campaign apart from the proposer: here the
OpenAI backend against a real OpenAI-compatible HTTP server on localhost (serving a scripted
model), built by the prompt kind from ``[prompt] task_model``; the proposer is a scripted model."""
import pytest

from search.core import Engine, parse_campaign
from search.llm import ScriptedLLM
from search.llm.server import OpenAICompatServer


def sum_model(req):
    q = req.messages[-1].content
    instr, x = q.split("\n\nInput: ", 1)
    nums = x.split("\nOutput:")[0].split()
    if "sum" not in instr.lower() or not all(n.isdigit() for n in nums):
        return "hmm"
    return str(sum(map(int, nums)))


def proposer(req):
    return f"<prompt>Write the sum of the numbers (v{req.seed % 101}).</prompt>"


@pytest.fixture
def server():
    s = OpenAICompatServer(ScriptedLLM(sum_model)).start()
    yield s
    s.stop()


def test_openai_task_model_from_the_campaign(server, tmp_path):
    c = parse_campaign({
        "name": "oa", "kind": "prompt", "random_seed": 0,
        "prompt": {"task": "sum", "algorithm": "ga", "sizes": {"train": 3, "dev": 6, "test": 8}, "minibatch": 3,
                   "test_top": 1, "task_model": {"backend": "openai", "model": "served", "base_url": server.url,
                                                 "api_key": "k", "backoff_s": 0.01}},
        "search": {"population": 2, "batch_size": 2},
        "budget": {"evaluations": 5, "llm_calls": 4, "fidelity_cost": {"minibatch": 1, "dev": 0.01}}})
    prop = ScriptedLLM(proposer)
    eng = Engine(c, tmp_path / "run", llm=prop)
    try:
        eng.run()
        final = eng.store.get_meta("prompt_final")
    finally:
        eng.close()
    assert server.chat_count > 0 and prop.calls > 0              # both models were used, each its own
    body = server.bodies[0]
    assert body["model"] == "served" and body["temperature"] == 0.0   # the scorer decodes greedily
    q = body["messages"][-1]["content"]
    assert q.startswith("Instruction: ") and "\n\nInput: " in q and q.endswith("\nOutput:")
    assert not any("<prompt>" in b["messages"][-1]["content"] for b in server.bodies)  # no proposer traffic
    assert final["initial"]["test"] == 0.0 and final["best"]["test"] == 1.0
    assert (tmp_path / "run" / "task_llm_cache").exists()       # the task model has its own cache


def test_label_task_without_logprobs_falls_back_to_generation(server, tmp_path):
    from evaluators import Candidate
    from search.core import get_kind
    c = parse_campaign({"name": "oa2", "kind": "prompt",
                        "prompt": {"task": "sentiment", "sizes": {"train": 2, "dev": 4, "test": 4},
                                   "task_model": {"backend": "openai", "model": "m", "base_url": server.url,
                                                  "api_key": "k"}}})
    ev = get_kind("prompt").make_evaluator(c, tmp_path)
    r = ev.evaluate([Candidate(kind="prompt", text="Classify it.")], "dev")[0]
    assert r.ok and r.tasks["sentiment"].extra["scoring"].startswith("generation")
    assert r.score == 0.0                                        # the served model says "hmm", never a label
