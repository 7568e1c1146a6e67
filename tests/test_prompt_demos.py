"""Few-shot candidates: the text encoding, the no-LLM demonstration edits (train split only,
deterministic), and both placements as the task model receives them."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluators.base import Candidate, Status
from evaluators.prompts import PromptEvaluator
from proxies.prompts import (
    DEMO_EDITS,
    check_demos,
    crossover_demos,
    decode_prompt,
    edit_demos,
    encode_prompt,
    generate_task,
    sample_demos,
    with_instruction,
)
from search.llm import ScriptedLLM

words = st.text(alphabet=st.characters(whitelist_categories=("L", "N", "P", "Zs")), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(words, st.lists(st.integers(0, 500), max_size=8, unique=True))
def test_encoding_round_trips_and_survives_whitespace_collapsing(instruction, demos):
    if not instruction.split():
        return
    text = encode_prompt(instruction, demos)
    assert decode_prompt(text) == (" ".join(instruction.split()), tuple(demos))
    assert decode_prompt(" ".join(text.split())) == decode_prompt(text)   # the engine's normalization
    assert encode_prompt(*decode_prompt(text)) == text                     # canonical
    assert "\n" not in text


def test_plain_prompts_are_zero_shot_and_llm_edits_keep_the_demonstrations():
    assert decode_prompt("Add an s.") == ("Add an s.", ())
    assert encode_prompt("Add an s.", ()) == "Add an s."
    assert decode_prompt("Add an s.\n[demos: 3,7, 1]") == ("Add an s.", (3, 7, 1))
    assert with_instruction("Old. [demos: 2, 0]", "New words.") == "New words. [demos: 2, 0]"


def test_edits_are_deterministic_stay_in_the_train_split_and_cover_every_op():
    n_train = 6
    for seed in range(30):
        runs = []
        for _ in range(2):
            rng, d, log = random.Random(seed), sample_demos(n_train, 3, random.Random(seed)), []
            for _ in range(12):
                d, desc = edit_demos(d, n_train, rng, max_demos=4)
                assert check_demos(d, n_train) is None and len(d) <= 4
                log.append((d, desc))
            runs.append(log)
        assert runs[0] == runs[1]
    rng = random.Random(0)
    for op in DEMO_EDITS:
        d, desc = edit_demos((0, 1, 2), n_train, rng, op=op)
        assert desc.split()[0] == {"add": "add", "drop": "drop", "replace": "replace", "reorder": "swap"}[op]
        assert (len(d) == 4) == (op == "add") and (len(d) == 2) == (op == "drop")
        assert (sorted(d) == [0, 1, 2]) == (op == "reorder") and d != (0, 1, 2)
    assert edit_demos((), 0, rng) == ((), "none")                      # nothing possible
    assert edit_demos((), 3, rng, op="drop")[1].startswith("add")      # falls back to an edit that can apply
    with pytest.raises(ValueError, match="unknown demonstration edit"):
        edit_demos((0,), 3, rng, op="shuffle")


def test_crossover_mixes_both_parents_without_repeats():
    rng = random.Random(1)
    a, b = (0, 1, 2, 3), (4, 5, 2, 6)
    kids = {crossover_demos(a, b, rng, max_demos=5)[0] for _ in range(200)}
    for k in kids:
        assert len(set(k)) == len(k) and len(k) <= 5 and set(k) <= set(a) | set(b)
    assert any(set(k) & {0, 1, 3} and set(k) & {4, 5, 6} for k in kids)
    assert crossover_demos(a, b, random.Random(7)) == crossover_demos(a, b, random.Random(7))


def _echo_last(req):
    """Shows what the task model received: the number of turns and the last user text."""
    return f"{len(req.messages)}|{req.messages[-1].content}"


def test_both_placements_as_the_task_model_sees_them():
    task = generate_task("plural", sizes={"train": 5, "dev": 4, "test": 4})
    text = encode_prompt("Give the plural.", (2, 0))
    seen = []

    def reply(req):
        seen.append([(m.role, m.content) for m in req.messages])
        return "x"

    chat = PromptEvaluator(task, ScriptedLLM(reply), baseline=False, demo_placement="chat")
    chat.evaluate([Candidate(kind="prompt", text=text)], "dev")
    t0, t2, q = task.train[0], task.train[2], task.dev[0]
    assert seen[0] == [("user", f"Instruction: Give the plural.\n\nInput: {t2.input}\nOutput:"),
                       ("assistant", t2.output),
                       ("user", f"Instruction: Give the plural.\n\nInput: {t0.input}\nOutput:"),
                       ("assistant", t0.output),
                       ("user", f"Instruction: Give the plural.\n\nInput: {q.input}\nOutput:")]
    seen.clear()
    inline = PromptEvaluator(task, ScriptedLLM(reply), baseline=False, demo_placement="instruction")
    inline.evaluate([Candidate(kind="prompt", text=text)], "dev")
    assert seen[0] == [("user", f"Instruction: Give the plural.\n\nExamples:\nInput: {t2.input}\nOutput: "
                                f"{t2.output}\n\nInput: {t0.input}\nOutput: {t0.output}\n\nInput: {q.input}\nOutput:")]
    # the placement is part of a few-shot candidate's cache key, not of a zero-shot one's
    c0, c1 = Candidate(kind="prompt", text="Give the plural."), Candidate(kind="prompt", text=text)
    assert chat.key(c0) == inline.key(c0) and chat.key(c1) != inline.key(c1)
    with pytest.raises(ValueError, match="demo_placement"):
        PromptEvaluator(task, ScriptedLLM(reply), demo_placement="system")


def test_demonstrations_change_the_score_and_bad_indices_are_invalid():
    task = generate_task("plural", sizes={"train": 5, "dev": 6, "test": 4})
    answers = {ex.input: ex.output for ex in task.dev}

    def reply(req):   # answers right only when it was shown at least one demonstration
        q = req.messages[-1].content.split("Input: ")[-1].split("\n")[0]
        return answers[q] if len(req.messages) > 1 else "no idea"

    ev = PromptEvaluator(task, ScriptedLLM(reply), baseline=False)
    zero, few, out_of_split, repeated = ev.evaluate([Candidate(kind="prompt", text=t) for t in (
        "Plural.", encode_prompt("Plural.", (1,)), encode_prompt("Plural.", (5,)), "Plural. [demos: 1, 1]")], "dev")
    assert zero.score == 0.0 and few.score == 1.0
    assert out_of_split.status == Status.invalid and "outside the train split (5 examples)" in out_of_split.reason
    assert repeated.status == Status.invalid and "repeat" in repeated.reason
