"""The prompt kind's operators: EvoPrompt GA and DE, OPRO, rewrite, paraphrase (LLM), a word edit,
and the demonstration edits and crossover (no LLM).

Each LLM operator builds one proposer request per parent group (the meta-prompts are in
search.prompts.text), sends them as one batch, and parses each reply defensively. A candidate
may carry few-shot demonstrations (``proxies.prompts.demos``): the LLM operators and the word
edit see and change only its instruction and keep the first parent's demonstrations; the
demonstration operators change only the demonstrations (train split indices).
"""
from __future__ import annotations

from proxies.prompts import (
    PromptTask,
    crossover_demos,
    decode_prompt,
    edit_demos,
    encode_prompt,
    instruction_of,
    with_instruction,
)
from search.core import Campaign, Context, Individual, Operator, Proposal, register_operator

from . import text as ops
from .options import prompt_options


def _seen(ctx: Context) -> set[str]:
    return {ops.normalize_key(i.text) for i in ctx.history.values()} | {
        ops.normalize_key(i.text) for i in ctx.population}


def _task(ctx: Context) -> PromptTask | None:
    return getattr(ctx.evaluator, "task", None)


def _seen_instructions(ctx: Context, demos: tuple[int, ...]) -> set[str]:
    """Duplicate keys of the instructions already in the run with exactly these demonstrations (a
    new instruction under them is a new candidate)."""
    out = set()
    for i in list(ctx.history.values()) + list(ctx.population):
        instr, d = decode_prompt(i.text)
        if d == demos:
            out.add(ops.normalize_key(instr))
    return out


def _seen_for(ctx: Context, demos: tuple[int, ...], cache: dict[tuple[int, ...], set[str]]) -> set[str]:
    """The duplicate keys a new instruction under ``demos`` must avoid (``_seen_instructions``, or
    every prompt's key without demonstrations), computed once per ``propose`` call and demo set;
    the caller adds what it proposes to the returned set."""
    if demos not in cache:
        cache[demos] = _seen_instructions(ctx, demos) if demos else _seen(ctx)
    return cache[demos]


class _PromptLLMOp(Operator):
    """Builds one proposer request per parent group, sends them as one batch, parses each reply."""
    uses_llm = True
    kinds = ("prompt",)

    def __init__(self, campaign: Campaign):
        self.campaign = campaign
        self.o = prompt_options(campaign)

    def request(self, ctx: Context, group: list[Individual]):  # pragma: no cover - abstract
        raise NotImplementedError

    def propose(self, ctx: Context, parent_groups: list[list[Individual]]) -> list[Proposal]:
        reqs = [self.request(ctx, g) for g in parent_groups]
        resps = ctx.llm_chat(reqs, purpose=self.name)
        if resps is None:
            resps = []
        seen_by: dict[tuple[int, ...], set[str]] = {}
        out: list[Proposal] = []
        for k, g in enumerate(parent_groups):
            parents = tuple(i.id for i in g)
            demos = decode_prompt(g[0].text)[1]
            seen = _seen_for(ctx, demos, seen_by)
            r = resps[k] if k < len(resps) else None
            if r is None:
                out.append(Proposal(None, self.name, parents, reason="no LLM reply (LLM unavailable or its "
                                                                      "call budget spent)"))
            elif r.error:
                out.append(Proposal(None, self.name, parents, reason=f"LLM error: {r.error}"))
            else:
                p = ops.parse_proposal(r.text, seen=seen, max_chars=self.o.max_prompt_chars)
                if p.ok:
                    seen.add(ops.normalize_key(p.text))
                meta = {"parsed_from": p.source, "llm": True}
                if not p.ok and p.candidate:
                    meta["rejected_text"] = p.candidate[:300]
                text = encode_prompt(p.text, demos) if p.ok else None
                out.append(Proposal(text, self.name, parents, raw=r.text, reason=p.reason, meta=meta))
        return out


@register_operator("prompt_ga")
class GAOperator(_PromptLLMOp):
    """EvoPrompt GA: crossover of two parents then mutation, in one call."""
    name, arity = "prompt_ga", 2

    def request(self, ctx, group):
        p1, p2 = group[0], group[-1]
        return ops.ga_request(instruction_of(p1.text), instruction_of(p2.text), ctx.rng, temperature=self.o.temperature,
                              max_tokens=self.o.proposer_max_tokens)


@register_operator("prompt_de")
class DEOperator(_PromptLLMOp):
    """EvoPrompt DE: parents = [current, best, a, b]."""
    name, arity = "prompt_de", 4

    def request(self, ctx, group):
        cur, best, a, b = (group + group[-1:] * 4)[:4]
        cur, best, a, b = (instruction_of(i.text) for i in (cur, best, a, b))
        return ops.de_request(cur, best, a, b, ctx.rng, temperature=self.o.temperature,
                              max_tokens=self.o.proposer_max_tokens + 32)


@register_operator("prompt_opro")
class OPROOperator(_PromptLLMOp):
    """OPRO: parents = the trajectory shown (best first); the meta-prompt lists them ascending."""
    name, arity = "prompt_opro", 1

    def request(self, ctx, group):
        task = _task(ctx)
        desc = task.description if task is not None else ""
        train = list(task.train) if task is not None else []
        exs = ctx.rng.sample(train, min(self.o.opro_examples, len(train))) if train else []
        traj = sorted(group, key=lambda i: (i.rank_key(), -i.id))
        return ops.opro_request(desc, [(e.input, e.output) for e in exs], [(instruction_of(i.text), max(0.0, i.score))
                                                                        for i in traj],
                                ctx.rng, temperature=max(self.o.temperature, 1.0),
                                max_tokens=self.o.proposer_max_tokens)


@register_operator("prompt_rewrite")
class RewriteOperator(_PromptLLMOp):
    """The baseline: "rewrite this prompt so that it scores higher"."""
    name, arity = "prompt_rewrite", 1

    def request(self, ctx, group):
        return ops.rewrite_request(instruction_of(group[0].text), max(0.0, group[0].score), ctx.rng,
                                   temperature=self.o.temperature, max_tokens=self.o.proposer_max_tokens)


@register_operator("prompt_paraphrase")
class ParaphraseOperator(_PromptLLMOp):
    """Initial population: a paraphrase of the parent."""
    name, arity = "prompt_paraphrase", 1

    def request(self, ctx, group):
        return ops.paraphrase_request(instruction_of(group[0].text), ctx.rng, temperature=max(self.o.temperature, 1.0),
                                      max_tokens=self.o.proposer_max_tokens)


@register_operator("prompt_edit")
class EditOperator(Operator):
    """Word-level edit (insert / drop / swap / replace from a small vocabulary); no LLM."""
    name, arity, uses_llm, kinds = "prompt_edit", 1, False, ("prompt",)

    def __init__(self, campaign: Campaign):
        self.o = prompt_options(campaign)

    def propose(self, ctx: Context, parent_groups: list[list[Individual]]) -> list[Proposal]:
        seen_by: dict[tuple[int, ...], set[str]] = {}
        out = []
        for g in parent_groups:
            instr, demos = decode_prompt(g[0].text)
            seen = _seen_for(ctx, demos, seen_by)
            p = ops.fallback_edit(instr, ctx.rng, seen, max_chars=self.o.max_prompt_chars)
            if p.ok:
                seen.add(ops.normalize_key(p.text))
            out.append(Proposal(with_instruction(g[0].text, p.text) if p.ok else None, self.name, (g[0].id,),
                                raw=p.raw or None, reason=p.reason))
        return out


class _DemoOp(Operator):
    """Changes the demonstrations only (train split indices); the instruction is the first parent's."""
    uses_llm, kinds = False, ("prompt",)
    tries = 8

    def __init__(self, campaign: Campaign):
        self.o = prompt_options(campaign)

    def change(self, ctx: Context, group: list[Individual], n_train: int) -> tuple[tuple[int, ...], str]:
        raise NotImplementedError  # pragma: no cover - abstract

    def propose(self, ctx: Context, parent_groups: list[list[Individual]]) -> list[Proposal]:
        task = _task(ctx)
        n_train = len(task.train) if task is not None else 0
        seen = {" ".join(i.text.split()) for i in list(ctx.history.values()) + list(ctx.population)}
        out = []
        for g in parent_groups:
            parents = tuple(i.id for i in g)
            if n_train == 0:
                out.append(Proposal(None, self.name, parents, reason="the task has no train split to draw "
                                                                      "demonstrations from"))
                continue
            text, desc = None, "no novel demonstration set found"
            for _ in range(self.tries):
                demos, how = self.change(ctx, g, n_train)
                cand = encode_prompt(instruction_of(g[0].text), demos)
                if cand not in seen and how != "none":
                    text, desc = cand, how
                    break
            if text is not None:
                seen.add(text)
            out.append(Proposal(text, self.name, parents, raw=desc if text else None,
                                reason="" if text else desc))
        return out


@register_operator("prompt_demo_edit")
class DemoEditOperator(_DemoOp):
    """Add, drop, replace or reorder one demonstration (proxies.prompts.edit_demos)."""
    name, arity = "prompt_demo_edit", 1

    def change(self, ctx, group, n_train):
        return edit_demos(decode_prompt(group[0].text)[1], n_train, ctx.rng, max_demos=self.o.max_demos)


@register_operator("prompt_demo_cross")
class DemoCrossOperator(_DemoOp):
    """One-point crossover of two parents' demonstration sets (the first parent's instruction)."""
    name, arity = "prompt_demo_cross", 2

    def change(self, ctx, group, n_train):
        a, b = decode_prompt(group[0].text)[1], decode_prompt(group[-1].text)[1]
        return crossover_demos(a, b, ctx.rng, max_demos=self.o.max_demos)
