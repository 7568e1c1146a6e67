"""The real embedded model (SmolLM2-135M-Instruct) as the task model, on a few examples."""
import pytest

from evaluators import Candidate, PromptEvaluator, Status
from proxies.prompts import get_prompt_task

pytestmark = pytest.mark.slow   # loads the model and generates on CPU: ~30-90 s on 2 busy cores


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    from search.llm import make_llm
    return make_llm({"backend": "local"}, cache_dir=tmp_path_factory.mktemp("task_cache"))


def test_generation_task_with_local_model(llm):
    task = get_prompt_task("plural", sizes={"train": 2, "dev": 4, "test": 4})
    ev = PromptEvaluator(task, llm, metric="contains", max_tokens=10, baseline=False)
    good, plain = ev.evaluate([Candidate(kind="prompt", text="Write the plural form of the word."),
                               Candidate(kind="prompt", text="Change the word.")], "dev")
    for r in (good, plain):
        assert r.status == Status.ok, r.reason
        tr = r.tasks["plural"]
        assert len(tr.extra["per_example"]) == 4 and all(isinstance(p, str) for p in tr.extra["predictions"])
        assert any(p.strip() for p in tr.extra["predictions"]) and r.tokens > 0
        assert 0.0 <= r.score <= 1.0
    again = ev.evaluate([Candidate(kind="prompt", text="Write the plural form of the word.")], "dev")[0]
    assert again.cached and again.score == good.score


def test_label_task_with_local_model(llm):
    task = get_prompt_task("sentiment", sizes={"train": 2, "dev": 6, "test": 4})
    ev = PromptEvaluator(task, llm, baseline=False)
    r = ev.evaluate([Candidate(kind="prompt", text="Is the sentence positive or negative?")], "dev")[0]
    assert r.status == Status.ok, r.reason
    assert r.tasks["sentiment"].extra["scoring"] == "label log-probabilities"
    assert set(r.tasks["sentiment"].extra["predictions"]) <= {"positive", "negative"}
