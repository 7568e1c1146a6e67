"""PromptEvaluator: scores prompts (candidates of kind "prompt") on one prompt task.

Score = accuracy of the task model on a split, in [0, 1]: the model sees the
instruction-induction query for each example (greedy decoding, a few tokens,
stop at the newline) and its reply is matched against the target after
normalization; classification tasks are scored by the label words'
log-probabilities instead (argmax over labels). Fidelities, cheap -> expensive:

* ``minibatch`` - a seeded subset of the dev split (screening);
* ``dev``       - the whole dev split (selection);
* ``test``      - the held-out test split, scored for the finalists only after the search.

``fidelities`` (the search funnel) is ("minibatch", "dev"); "test" is accepted by
``evaluate`` but kept out of the funnel so that no selection ever sees it.

A candidate's text may carry few-shot demonstrations from the train split (``<instruction>
[demos: 3, 7]``, see :mod:`proxies.prompts.demos`); ``demo_placement`` says where the task
model sees them: as earlier user/assistant turns (``"chat"``, the default: measured better on
the embedded model, bench/results/prompts.md) or inside the instruction (``"instruction"``).
An index outside the train split, or a repeated one, makes the candidate ``invalid``.

The cache key hashes the whitespace-normalized prompt with the task's data
fingerprint and every setting that changes a score (task model, decoding,
minibatch size and seed), so an equal prompt is never scored twice. Failures
never raise: an empty or overlong prompt is ``invalid``; a task-model error is
``error`` with the backend's message as the reason (and is not cached, so a
resumed run retries it).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from typing import Any

from proxies.prompts import PLACEMENTS, Example, PromptTask, check_demos, decode_prompt, match, render_messages

from .base import Candidate, EvalResult, Evaluator, OnResult, ResultStream, Status, TaskResult
from .llm import LLM, ChatRequest, Message

PROMPT_FIDELITIES: tuple[str, ...] = ("minibatch", "dev", "test")
_WS = re.compile(r"\s+")


def normalize_prompt(text: str) -> str:
    """Whitespace collapsed and stripped: prompts equal up to spacing share a cache key."""
    return _WS.sub(" ", text).strip()


class PromptEvaluator(Evaluator):
    """Accuracy of a task model following a prompt on ``task``.

    Args:
        task: the prompt task (splits, metric, labels).
        llm: the task model (any backend); decoding is greedy.
        llm_id: a string naming the task model in cache keys (e.g. "local:SmolLM2-135M").
        minibatch_size / minibatch_seed: the screening subset of dev.
        max_prompt_chars: longer prompts are ``invalid``.
        baseline: also score the task's initial prompt at each fidelity used and put its accuracy
            in ``TaskResult.baseline`` (one extra, cached evaluation per fidelity).
        stop / system: decoding stop strings and an optional system message for the task model.
        metric: override the task's metric for generation tasks (exact / normalized / contains), e.g.
            "contains" for a small task model that answers in a sentence.
        max_tokens: override the task's reply length limit.
        demo_placement: where demonstrations go, "chat" (earlier turns) or "instruction".
    """

    kind = "prompt"
    fidelities = ("minibatch", "dev")
    final_fidelity = "test"

    def __init__(self, task: PromptTask, llm: LLM, *, llm_id: str | None = None, minibatch_size: int = 10,
                 minibatch_seed: int = 0, max_prompt_chars: int = 800, baseline: bool = True,
                 stop: list[str] | None = None, system: str | None = None, metric: str | None = None,
                 max_tokens: int | None = None, demo_placement: str = "chat") -> None:
        if minibatch_size < 1:
            raise ValueError("minibatch_size must be >= 1")
        if metric is not None and metric not in ("exact", "normalized", "contains"):
            raise ValueError(f"metric override {metric!r}: use exact, normalized or contains")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if demo_placement not in PLACEMENTS:
            raise ValueError(f"demo_placement {demo_placement!r}: use one of {', '.join(PLACEMENTS)}")
        self.demo_placement = demo_placement
        self.task = task
        self.llm = llm
        self.llm_id = llm_id or llm.name
        self.minibatch_size = min(minibatch_size, len(task.dev))
        self.minibatch_seed = minibatch_seed
        self.max_prompt_chars = max_prompt_chars
        self.baseline = baseline
        self.stop = ["\n"] if stop is None else list(stop)
        self.system = system
        self.metric = task.metric if (metric is None or task.metric == "label") else metric
        self.max_tokens = max_tokens or task.max_tokens
        idx = list(range(len(task.dev)))
        random.Random(f"minibatch:{task.name}:{minibatch_seed}").shuffle(idx)
        self._minibatch_idx = sorted(idx[: self.minibatch_size])
        self._cache: dict[tuple[str, str], EvalResult] = {}
        self._settings = json.dumps({
            "task": task.name, "task_fp": task.fingerprint(), "llm": self.llm_id, "stop": self.stop,
            "system": system, "max_tokens": self.max_tokens, "metric": self.metric,
            "minibatch": [self.minibatch_size, minibatch_seed], "template": 1}, sort_keys=True)
        #: LLM accounting for this evaluator (task-model side).
        self.calls = 0
        self.requests = 0
        self.tokens = 0

    # ----------------------------------------------------------------- interface
    def key(self, candidate: Candidate) -> str:
        h = hashlib.sha256(self._settings.encode())
        h.update(b"\x00" + normalize_prompt(candidate.text).encode())
        if decode_prompt(candidate.text)[1]:   # zero-shot keys do not depend on the placement
            h.update(b"\x00placement:" + self.demo_placement.encode())
        return h.hexdigest()

    def examples(self, fidelity: str) -> tuple[list[int], list[Example]]:
        """The indices (into the split) and examples scored at ``fidelity``."""
        if fidelity == "minibatch":
            return self._minibatch_idx, [self.task.dev[i] for i in self._minibatch_idx]
        if fidelity in ("dev", "test"):
            split = self.task.split(fidelity)
            return list(range(len(split))), split
        raise ValueError(f"unknown fidelity {fidelity!r} for prompts: use one of {', '.join(PROMPT_FIDELITIES)}")

    def evaluate(self, candidates: list[Candidate], fidelity: str,
                 on_result: OnResult = None) -> list[EvalResult]:
        """All uncached valid prompts of the batch (and the baseline) go to the task model together:
        one ``chat()`` (or ``logprobs()``) call for every example of every prompt, so a local
        backend fills its generation batches.

        ``on_result(index, result)``: invalid prompts and cache hits are final at once when the
        baseline's accuracy is already known (cached), the rest when the batched call returns."""
        self.examples(fidelity)  # validates the fidelity (a programming error, so it raises)
        emit = ResultStream(on_result)
        n_asked = len(candidates)
        cands = list(candidates)
        if self.baseline:
            cands.append(Candidate(kind="prompt", text=self.task.initial_prompt))
        results: list[EvalResult | None] = [None] * len(cands)
        pending: dict[str, list[int]] = {}   # key -> positions (twins in one batch are scored once)
        texts: dict[str, str] = {}
        for i, c in enumerate(cands):
            key = self.key(c)
            hit = self._cache.get((key, fidelity))
            if hit is not None:
                results[i] = hit.model_copy(update={"cached": True}, deep=True)
                continue
            reason = self.validate(c.text)
            if reason is not None:
                results[i] = EvalResult(key=key, fidelity=fidelity, status=Status.invalid, reason=reason)
                continue
            pending.setdefault(key, []).append(i)
            texts[key] = normalize_prompt(c.text)

        def send_final() -> None:
            base = results[n_asked] if self.baseline else None
            for i in range(n_asked):
                r = results[i]
                if r is None or i in emit.sent:
                    continue
                tr = r.tasks.get(self.task.name)
                if base is not None and tr is not None and base.ok:
                    tr.baseline = base.score
                emit(i, r)

        if not self.baseline or results[n_asked] is not None:
            send_final()           # the baseline is known: cache hits and invalid prompts are final
        if pending:
            keys = list(pending)
            t0 = time.perf_counter()
            try:
                scored = self._score_many(keys, [texts[k] for k in keys], fidelity)
            except Exception as e:  # noqa: BLE001 - a backend bug must not stop the batch
                scored = [EvalResult(key=k, fidelity=fidelity, status=Status.error,
                                     reason=f"task model raised {type(e).__name__}: {e}") for k in keys]
            share = (time.perf_counter() - t0) / len(keys)
            for k, res in zip(keys, scored):
                res.seconds = share   # the batch's wall time, shared evenly
                if res.ok:
                    self._cache[(k, fidelity)] = res.model_copy(deep=True)
                for n, i in enumerate(pending[k]):
                    results[i] = res if n == 0 else res.model_copy(update={"cached": True}, deep=True)
        send_final()
        emit.raise_pending()
        return [r for r in results[:n_asked]]  # type: ignore[misc]

    # ------------------------------------------------------------------ internals
    def validate(self, text: str) -> str | None:
        """The reason a prompt is refused, or None if it may be scored."""
        p, demos = decode_prompt(text)
        if not p:
            return "empty prompt: the instruction has no text"
        if len(p) > self.max_prompt_chars:
            return f"prompt too long: {len(p)} characters, the limit is {self.max_prompt_chars}"
        return check_demos(demos, len(self.task.train))

    def _score_many(self, keys: list[str], prompts: list[str], fidelity: str) -> list[EvalResult]:
        idx, exs = self.examples(fidelity)
        n = len(exs)
        queries = []
        for p in prompts:
            instr, demos = decode_prompt(p)
            shown = [self.task.train[i] for i in demos]
            queries += [self.conversation(instr, shown, ex.input) for ex in exs]
        base_extra: dict[str, Any] = {"split": "dev" if fidelity == "minibatch" else fidelity, "indices": idx,
                                      "metric": self.metric}
        if self.metric == "label":
            preds, tokens, how = self._classify(queries)
            if preds is None:
                return [EvalResult(key=k, fidelity=fidelity, status=Status.error, reason=how) for k in keys]
            rows = [(preds[j * n:(j + 1) * n], tokens // max(1, len(keys)), "") for j in range(len(keys))]
            base_extra["scoring"] = how
        else:
            rows = self._generate(queries, n)
            base_extra["scoring"] = "generation"
        out = []
        for k, (preds, tokens, err) in zip(keys, rows):
            if err:
                out.append(EvalResult(key=k, fidelity=fidelity, status=Status.error, reason=err, tokens=tokens))
                continue
            per = [match(p, ex.targets, "normalized" if self.metric == "label" else self.metric)
                   for p, ex in zip(preds, exs)]
            acc = sum(per) / len(per)
            extra = dict(base_extra, per_example=per, predictions=list(preds))
            tr = TaskResult(task=self.task.name, metric=acc, metric_name="accuracy", higher_is_better=True,
                            score=acc, extra=extra)
            out.append(EvalResult(key=k, fidelity=fidelity, score=acc, tasks={self.task.name: tr}, tokens=tokens))
        return out

    def conversation(self, instruction: str, demos: list[Example], input_text: str) -> list[Message]:
        """The messages the task model gets for one input (system message, demonstrations, query)."""
        msgs = [Message(role="system", content=self.system)] if self.system else []
        return msgs + [Message(role=r, content=c)
                       for r, c in render_messages(instruction, demos, input_text, self.demo_placement)]

    def _generate(self, queries: list[list[Message]], n: int) -> list[tuple[list[str], int, str]]:
        """Greedy replies for all queries in one batched call, cut into groups of ``n`` (one per
        prompt): (texts, tokens, error or "") per group."""
        reqs = [ChatRequest(messages=q, temperature=0.0, max_tokens=self.max_tokens,
                            stop=self.stop or None, seed=0, purpose="task") for q in queries]
        self.calls += 1
        self.requests += len(reqs)
        resps = self.llm.chat(reqs)
        self.tokens += sum(r.prompt_tokens + r.completion_tokens for r in resps)
        groups = len(reqs) // n
        if len(resps) != len(reqs):
            err = f"task model returned {len(resps)} replies for {len(reqs)} requests"
            return [([], 0, err)] * groups
        out = []
        for j in range(groups):
            part = resps[j * n:(j + 1) * n]
            tokens = sum(r.prompt_tokens + r.completion_tokens for r in part)
            errors = [r.error for r in part if r.error]
            if errors:
                out.append(([], tokens, f"task model failed on {len(errors)}/{n} examples: {errors[0]}"))
            else:
                out.append(([r.text for r in part], tokens, ""))
        return out

    def _classify(self, queries: list[list[Message]]) -> tuple[list[str] | None, int, str]:
        """Argmax-label predictions from log-probabilities; generation when the backend has none.

        Each query is rendered with the backend's chat template when it has one (``render_chat``),
        so the labels are scored where the assistant's answer starts. A label's score is
        log(P(label) + P(Label)) (lower-case and capitalized variants), so a model's habit of
        capitalizing does not decide the class.
        """
        labels = list(self.task.labels)
        try:
            rendered = [self.llm.render_chat(q) for q in queries]
            if all(r is not None for r in rendered):
                prompts, sep = rendered, ""
            else:   # plain text: the turns one after another
                prompts, sep = ["\n\n".join(m.content for m in q if m.role != "system") for q in queries], " "
            variants = [v for lab in labels for v in (sep + lab, sep + lab.capitalize())]
            lps = self.llm.logprobs(prompts, [variants] * len(queries))
        except NotImplementedError:
            (preds, tokens, err), = self._generate(queries, len(queries))
            if err:
                return None, tokens, err
            return preds, tokens, "generation (the backend has no log-probabilities)"
        except Exception as e:  # noqa: BLE001
            return None, 0, f"label scoring failed: {type(e).__name__}: {e}"
        self.calls += 1
        self.requests += len(queries)
        if len(lps) != len(queries) or any(len(row) != len(variants) for row in lps):
            return None, 0, "label scoring returned a malformed result (wrong number of scores)"
        preds = []
        for row in lps:
            scores = [_logaddexp(row[2 * j], row[2 * j + 1]) for j in range(len(labels))]
            preds.append(labels[max(range(len(labels)), key=lambda j: scores[j])])
        # logprobs() reports no token counts: count whitespace words of prompt + labels as an estimate.
        tokens = sum(len(p.split()) + len(variants) for p in prompts)
        self.tokens += tokens
        return preds, tokens, "label log-probabilities"


def _logaddexp(a: float, b: float) -> float:
    m = max(a, b)
    if m == float("-inf"):
        return m
    return m + math.log(math.exp(a - m) + math.exp(b - m))
