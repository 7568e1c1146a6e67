"""PromptEvaluator with the scripted backend as the task model: a scripted model that answers
correctly only when the instruction contains a keyword, so prompts really differ in score."""
import pytest

from evaluators import Candidate, PromptEvaluator, Status
from proxies.prompts import get_prompt_task
from search.llm import ScriptedLLM, make_llm


def _parse(req):
    q = req.messages[-1].content
    instr, rest = q.split("\n\nInput: ", 1)
    return instr.removeprefix("Instruction: "), rest.split("\nOutput:")[0]


def sum_model(req):
    """Knows how to add only when told to 'sum'; says 'error' in the instruction -> raises."""
    instr, x = _parse(req)
    if "explode" in instr:
        raise RuntimeError("backend exploded")
    a, b = map(int, x.split())
    return f"{a + b}\nextra line" if "sum" in instr.lower() else f"The numbers are {a} and {b}."


def P(text):
    return Candidate(kind="prompt", text=text)


@pytest.fixture
def task():
    return get_prompt_task("sum", sizes={"train": 5, "dev": 12, "test": 20})


def test_scores_per_example_tokens(task):
    llm = ScriptedLLM(sum_model)
    ev = PromptEvaluator(task, llm, minibatch_size=4)
    bad, good = ev.evaluate([P("Look at the numbers."), P("Give the sum of the numbers.")], "dev")
    assert bad.ok and good.ok
    assert ev.calls == 1 and ev.requests == 2 * 12       # one batched call; the baseline is a twin of `bad`
    assert bad.score == 0.0 and good.score == 1.0
    tr = good.tasks["sum"]
    assert tr.metric_name == "accuracy" and tr.higher_is_better
    assert tr.extra["per_example"] == [1.0] * 12 and len(tr.extra["predictions"]) == 12
    assert tr.extra["predictions"][0].startswith(task.dev[0].output)
    assert good.tokens > 0 and bad.tokens > 0
    # the baseline (the task's initial prompt "Look at the numbers.") is reported next to each score
    assert tr.baseline == 0.0
    mb = ev.evaluate([P("Give the sum of the numbers.")], "minibatch")[0]
    assert len(mb.tasks["sum"].extra["per_example"]) == 4
    assert set(mb.tasks["sum"].extra["indices"]) <= set(range(12))
    test = ev.evaluate([P("Give the sum of the numbers.")], "test")[0]
    assert len(test.tasks["sum"].extra["per_example"]) == 20 and test.score == 1.0


def test_partial_credit_is_per_example(task):
    def half(req):
        instr, x = _parse(req)
        a, b = map(int, x.split())
        return str(a + b) if "sum" in instr and a % 2 == 0 else "no idea"
    ev = PromptEvaluator(task, ScriptedLLM(half), baseline=False)
    r = ev.evaluate([P("sum")], "dev")[0]
    want = [1.0 if int(e.input.split()[0]) % 2 == 0 else 0.0 for e in task.dev]
    assert r.tasks["sum"].extra["per_example"] == want
    assert r.score == pytest.approx(sum(want) / len(want))


def test_cache_and_key(task):
    llm = ScriptedLLM(sum_model)
    ev = PromptEvaluator(task, llm, baseline=False)
    r1 = ev.evaluate([P("Give the sum.")], "dev")[0]
    calls = llm.calls
    r2 = ev.evaluate([P("  Give   the sum. ")], "dev")[0]
    assert r2.cached and not r1.cached and llm.calls == calls and r2.score == r1.score
    assert ev.key(P("Give the sum.")) == ev.key(P("Give\nthe  sum."))
    assert ev.key(P("Give the sum.")) != ev.key(P("Give the sum!"))
    other = PromptEvaluator(get_prompt_task("sum", seed=1), llm, baseline=False)
    assert other.key(P("Give the sum.")) != ev.key(P("Give the sum."))
    assert PromptEvaluator(task, llm, minibatch_size=3).key(P("x")) != PromptEvaluator(task, llm).key(P("x"))
    # the same cache key is served at each fidelity separately
    assert not ev.evaluate([P("Give the sum.")], "minibatch")[0].cached


def test_invalid_and_error_statuses(task):
    llm = ScriptedLLM(sum_model)
    ev = PromptEvaluator(task, llm, max_prompt_chars=50, baseline=False)
    empty, long, boom, ok = ev.evaluate([P("  \n "), P("sum " * 30), P("sum and explode"), P("sum")], "dev")
    assert empty.status == Status.invalid and "empty" in empty.reason
    assert long.status == Status.invalid and "too long" in long.reason
    assert boom.status == Status.error and "backend exploded" in boom.reason and "12/12" in boom.reason
    assert boom.score < -1e8
    assert ok.ok and ok.score == 1.0                       # the batch went on
    # errors are not cached: a retry asks the backend again
    calls = llm.calls
    assert ev.evaluate([P("sum and explode")], "dev")[0].status == Status.error and llm.calls > calls
    with pytest.raises(ValueError, match="unknown fidelity"):
        ev.evaluate([P("sum")], "full")


def test_through_make_llm_wrappers_and_metric_override(task, tmp_path):
    llm = make_llm({"backend": "scripted", "reply_fn": lambda rq: "I think it is " + str(
        sum(map(int, _parse(rq)[1].split()))) + "."}, cache_dir=tmp_path)
    strict = PromptEvaluator(task, llm, baseline=False)
    lenient = PromptEvaluator(task, llm, baseline=False, metric="contains")
    assert strict.evaluate([P("sum")], "dev")[0].score == 0.0
    assert lenient.evaluate([P("sum")], "dev")[0].score == 1.0
    with pytest.raises(ValueError, match="metric override"):
        PromptEvaluator(task, llm, metric="bleu")


def test_label_task_by_logprobs_and_generation_fallback():
    task = get_prompt_task("sentiment", sizes={"train": 4, "dev": 16, "test": 16})
    pos_words = ("great", "wonderful", "excellent", "fantastic", "delightful", "lovely", "amazing", "brilliant",
                 "charming", "superb", "enjoyable", "pleasant", "beautiful", "perfect", "outstanding", "fun",
                 "impressive", "marvelous", "terrific", "heartwarming")

    def lp(prompt, completion):
        """Knows sentiment only when the instruction mentions 'negation'; else always 'positive'."""
        text = prompt.split("Input: ")[1]
        pos = any(w in text for w in pos_words) != any(n in text for n in ("not", "never", "Nobody"))
        if "negation" not in prompt.split("Input:")[0]:
            pos = True
        want = "positive" if pos else "negative"
        return -0.1 if completion.strip().lower() == want else -3.0

    ev = PromptEvaluator(task, ScriptedLLM(lambda rq: "positive", logprob_fn=lp), baseline=False)
    plain, smart = ev.evaluate([P("Classify."), P("Classify; mind the negation.")], "dev")
    share_pos = sum(e.output == "positive" for e in task.dev) / len(task.dev)
    assert plain.score == pytest.approx(share_pos)
    assert smart.score == 1.0 and smart.tasks["sentiment"].extra["scoring"] == "label log-probabilities"
    # a backend without log-probabilities: greedy generation, normalized match of the label
    gen = PromptEvaluator(task, ScriptedLLM(lambda rq: "Positive."), baseline=False)
    r = gen.evaluate([P("Classify.")], "dev")[0]
    assert r.ok and r.score == pytest.approx(share_pos) and "generation" in r.tasks["sentiment"].extra["scoring"]
