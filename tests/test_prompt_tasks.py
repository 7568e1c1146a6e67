"""Prompt tasks: deterministic generation, disjoint splits, normalization and metrics, JSONL tasks."""
import json

import pytest

from proxies.prompts import (
    Example,
    PromptTask,
    format_query,
    get_prompt_task,
    list_prompt_tasks,
    load_jsonl_task,
    match,
    normalize,
)


def test_at_least_eight_tasks_with_descriptions_and_plain_prompts():
    names = list_prompt_tasks()
    assert len(names) >= 8
    for n in names:
        t = get_prompt_task(n)
        assert t.description and t.initial_prompt
        assert len(t.dev) >= 20 and len(t.test) >= 30 and len(t.train) >= 10


@pytest.mark.parametrize("name", list_prompt_tasks())
def test_generation_is_deterministic_and_splits_disjoint(name):
    a, b = get_prompt_task(name, seed=3), get_prompt_task(name, seed=3)
    assert a.fingerprint() == b.fingerprint()
    assert [e.input for e in a.test] == [e.input for e in b.test]
    ins = {s: {e.input for e in a.split(s)} for s in ("train", "dev", "test")}
    assert not ins["train"] & ins["dev"] and not ins["train"] & ins["test"] and not ins["dev"] & ins["test"]
    # no duplicate inputs within a split either
    for s in ("train", "dev", "test"):
        assert len(ins[s]) == len(a.split(s))
    # the reference output of every example is scored correct by the task's own metric
    for ex in a.dev:
        assert a.score(ex.output, ex) == 1.0


def test_different_seeds_give_different_splits():
    assert get_prompt_task("sum", seed=0).fingerprint() != get_prompt_task("sum", seed=1).fingerprint()


def test_known_targets():
    t = get_prompt_task("number_words")
    ex = (t.train + t.dev + t.test)[0]
    assert normalize(ex.output).replace(" ", "").isalpha() and ex.input.isdigit()
    from proxies.prompts.words import number_words
    assert number_words(342) == "three hundred forty-two" and number_words(80) == "eighty"
    assert number_words(100) == "one hundred" and number_words(0) == "zero"
    s = get_prompt_task("word_sorting").dev[0]
    assert s.output.split() == sorted(s.input.split())
    d = get_prompt_task("difference").dev[0]
    a, b = map(int, d.input.split())
    assert int(d.output) == a - b >= 0


def test_unknown_task_and_bad_sizes():
    with pytest.raises(KeyError, match="known"):
        get_prompt_task("nope")
    with pytest.raises(ValueError, match="split size"):
        get_prompt_task("sum", sizes={"dev": 0})


def test_format_query():
    assert format_query(" Add them. ", "3 4") == "Instruction: Add them.\n\nInput: 3 4\nOutput:"


@pytest.mark.parametrize("pred,target,metric,ok", [
    (" 47\nbecause 40+7", "47", "normalized", True),
    ("\n\nForty-Seven.", "forty seven", "normalized", True),
    ("c, a, t", "c a t", "normalized", True),
    ("The answer is 47.", "47", "normalized", False),
    ("The answer is 47.", "47", "contains", True),
    ("The answer is 470.", "47", "contains", False),
    ("47.", "47", "exact", False),
    ("  47 \nmore", "47", "exact", True),
    ("Cats", "cats", "exact", False),
])
def test_match(pred, target, metric, ok):
    assert match(pred, [target], metric) == float(ok)


def test_normalize():
    assert normalize("\n  Hello,   World!!  \nsecond") == "hello world"
    assert normalize("") == ""
    with pytest.raises(ValueError, match="unknown metric"):
        match("a", ["a"], "fuzzy")


def test_jsonl_task(tmp_path):
    p = tmp_path / "capitals.jsonl"
    rows = [{"input": f"country {i}", "output": f"city {i}"} for i in range(20)]
    rows.append({"input": "france", "output": "paris", "split": "test", "alts": ["Paris, France"]})
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    t = load_jsonl_task(p, metric="contains", initial_prompt="Name the capital.")
    assert t.name == "capitals" and t.metric == "contains"
    assert len(t.train) + len(t.dev) + len(t.test) == 21
    assert t.test[0].input == "france"
    assert t.score("It is Paris.", t.test[0]) == 1.0
    assert load_jsonl_task(p).fingerprint() == load_jsonl_task(p).fingerprint()


def test_jsonl_errors_name_the_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"input": "a", "output": "b"}\n{"input": "a"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: .*'input' and 'output'"):
        load_jsonl_task(p)
    p.write_text('{"input": "a", "output": "b"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        load_jsonl_task(p)
    with pytest.raises(ValueError, match="not available"):
        load_jsonl_task(p, metric="label")
    with pytest.raises(ValueError, match="not found"):
        load_jsonl_task(tmp_path / "missing.jsonl")


def test_task_validation():
    ex = [Example("a", "b")]
    with pytest.raises(ValueError, match="unknown metric"):
        PromptTask("t", "d", "p", ex, ex, ex, metric="bleu")
    with pytest.raises(ValueError, match="two labels"):
        PromptTask("t", "d", "p", ex, ex, ex, metric="label")
