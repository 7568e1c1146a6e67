"""Proposal parsing on messy tiny-model-style replies, word-level edits and selection."""
import random

import pytest

from search.prompts.text import (
    de_request,
    fallback_edit,
    ga_request,
    normalize_key,
    opro_request,
    parse_proposal,
    rewrite_request,
    roulette,
    word_edit,
)


@pytest.mark.parametrize("raw,text,source", [
    ("<prompt>Add the two numbers.</prompt>", "Add the two numbers.", "tag"),
    ("Sure! Here is the improved prompt:\n<PROMPT>\n  Output only the sum.\n</PROMPT>\nHope it helps!",
     "Output only the sum.", "tag"),
    ("<prompt>Final prompt: \"Write the plural.\"", "Write the plural.", "tag"),      # unclosed tag, label, quotes
    ("<prompt></prompt>\n```\nGive the first letter.\n```", "Give the first letter.", "fence"),
    ("```text\nNew prompt: Sort the words.\n```", "Sort the words.", "fence"),
    ("Sure, here's a better version:\n\n**Reply with the opposite word.**\nThis is clearer.",
     "Reply with the opposite word.", "line"),
    ("1. Name the larger number.", "Name the larger number.", "line"),
])
def test_parse_messy_replies(raw, text, source):
    p = parse_proposal(raw)
    assert p.ok, p.reason
    assert (p.text, p.source) == (text, source)


@pytest.mark.parametrize("raw,reason", [
    ("", "empty reply"),
    ("  \n\t", "empty reply"),
    ("Sure! Here is the new prompt:\n", "no prompt found"),
    ("<prompt>...</prompt>", "placeholder"),
    ("<prompt>Prompt</prompt>", "placeholder"),
    ("<prompt>Cross over Prompt 1 and Prompt 2.</prompt>", "echoes"),
    ("<prompt>" + "word " * 300 + "</prompt>", "too long"),
    ("<prompt>Add the numbers</prompt>", "duplicate"),
    ("<prompt>  add THE numbers. </prompt>", "duplicate"),
])
def test_rejections_have_reasons(raw, reason):
    p = parse_proposal(raw, seen={normalize_key("Add the numbers.")}, max_chars=200)
    assert not p.ok and p.text is None
    assert reason in p.reason


def test_word_edit_is_deterministic_and_changes_text():
    a = [word_edit("Look at the numbers.", random.Random(5)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = random.Random(0)
    outs = {word_edit("Look at the numbers.", rng)[0] for _ in range(30)}
    assert len(outs) > 5 and all(o.strip() for o in outs)
    assert word_edit("", random.Random(0))[0]  # an empty prompt gets an inserted word


def test_fallback_edit_avoids_duplicates():
    seen = {normalize_key("Look at the numbers.")}
    rng = random.Random(1)
    for _ in range(20):
        p = fallback_edit("Look at the numbers.", rng, seen)
        assert p.ok and p.source == "edit" and normalize_key(p.text) not in seen
        seen.add(normalize_key(p.text))


def test_roulette_prefers_high_scores():
    rng = random.Random(0)
    counts = [0, 0, 0]
    for _ in range(2000):
        i, j = roulette([0.0, 0.2, 0.9], rng, 2)
        assert i != j
        counts[i] += 1
    assert counts[2] > counts[1] > counts[0]
    assert roulette([0.0, 0.0], random.Random(0), 2) in ([0, 1], [1, 0])
    with pytest.raises(ValueError):
        roulette([1.0], rng, 2)


def test_request_builders():
    rng = random.Random(0)
    ga = ga_request("p one", "p two", rng)
    u = ga.messages[-1].content
    assert "Prompt 1: p one" in u and "Prompt 2: p two" in u and "<prompt>" in u and ga.purpose == "prompt-ga"
    assert ga.stop == ["</prompt>"] and ga.messages[0].role == "system"
    de = de_request("cur", "best", "a", "b", rng).messages[-1].content
    assert (de.index("Prompt 1: a") < de.index("Prompt 2: b") < de.index("Prompt 3: best")
            < de.index("Basic Prompt: cur"))
    opro = opro_request("Add.", [("1 2", "3")], [("worse", 0.2), ("better", 0.9)], rng).messages[-1].content
    assert "Add." in opro and "Input: 1 2\nOutput: 3" in opro
    assert opro.index("Instruction: worse") < opro.index("Instruction: better")
    assert "Score: 90" in opro and "Score: 20" in opro
    assert "scored 40 out of 100" in rewrite_request("x", 0.4, rng).messages[-1].content
    seeds = {ga_request("a", "b", rng).seed for _ in range(20)}
    assert len(seeds) == 20                                          # distinct samples, cache-distinct
