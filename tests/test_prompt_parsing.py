"""Proposal parsing on messy tiny-model-style replies, word-level edits and selection."""
import random

import pytest

from search.prompt_ops import (Member, fallback_edit, normalize_key, parse_proposal, plan_jobs, roulette,
                               survive, word_edit)


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


def _pop():
    return [Member("a b c", 0.2, 0), Member("d e f", 0.5, 1), Member("g h i", 0.9, 2)]


def test_plans():
    rng = random.Random(0)
    ga = plan_jobs("ga", _pop(), rng, 4)
    assert len(ga) == 4 and all(len(j.parents) == 2 and j.parents[0].score >= j.parents[1].score for j in ga)
    assert "<prompt>" in ga[0].request.messages[-1].content and ga[0].request.purpose == "prompt-ga"
    de = plan_jobs("de", _pop(), rng, 3)
    assert [j.slot for j in de] == [0, 1, 2]
    assert all(j.parents[1].text == "g h i" for j in de)               # the best is always the third prompt
    assert all(j.parents[0].text not in (j.parents[2].text, j.parents[3].text) for j in de)
    opro = plan_jobs("opro", _pop(), rng, 2, description="Add.", examples=[("1 2", "3")])
    msg = opro[0].request.messages[-1].content
    assert msg.index("a b c") < msg.index("d e f") < msg.index("g h i")  # ascending by score
    assert "Score: 90" in msg and "Input: 1 2" in msg
    rw = plan_jobs("rewrite", _pop(), rng, 2)
    assert len(rw) == 2 and "scored" in rw[0].request.messages[-1].content
    seeds = {j.request.seed for j in ga + de + opro + rw}
    assert len(seeds) == len(ga + de + opro + rw)                      # distinct samples, cache-distinct
    with pytest.raises(ValueError, match="unknown prompt algorithm"):
        plan_jobs("pso", _pop(), rng, 1)


def test_survive():
    pop = _pop()
    jobs = plan_jobs("de", pop, random.Random(0), 3)
    kids = [(jobs[0], Member("better", 0.3)), (jobs[2], Member("worse", 0.1))]
    de = survive("de", pop, kids, 3)
    assert [m.text for m in de] == ["better", "d e f", "g h i"]
    ga = survive("ga", pop, [(jobs[0], Member("top", 0.95)), (jobs[1], Member("G H I", 0.95))], 3)
    assert [m.text for m in ga] == ["top", "G H I", "d e f"]   # "g h i" is a near-duplicate of "G H I"
