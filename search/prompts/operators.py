"""The prompt kind's operators: EvoPrompt GA and DE, OPRO, rewrite, paraphrase (LLM) and a word edit.

Each LLM operator builds one proposer request per parent group (the meta-prompts are in
search.prompts.text), sends them as one batch, and parses each reply defensively.
"""
from __future__ import annotations

from proxies.prompts import PromptTask
from search.core import Campaign, Context, Individual, Operator, Proposal, register_operator

from . import text as ops
from .options import prompt_options


def _seen(ctx: Context) -> set[str]:
    return {ops.normalize_key(i.text) for i in ctx.history.values()} | {
        ops.normalize_key(i.text) for i in ctx.population}


def _task(ctx: Context) -> PromptTask | None:
    return getattr(ctx.evaluator, "task", None)


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
        seen = _seen(ctx)
        out: list[Proposal] = []
        for k, g in enumerate(parent_groups):
            parents = tuple(i.id for i in g)
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
                out.append(Proposal(p.text, self.name, parents, raw=r.text, reason=p.reason, meta=meta))
        return out


@register_operator("prompt_ga")
class GAOperator(_PromptLLMOp):
    """EvoPrompt GA: crossover of two parents then mutation, in one call."""
    name, arity = "prompt_ga", 2

    def request(self, ctx, group):
        p1, p2 = group[0], group[-1]
        return ops.ga_request(p1.text, p2.text, ctx.rng, temperature=self.o.temperature,
                              max_tokens=self.o.proposer_max_tokens)


@register_operator("prompt_de")
class DEOperator(_PromptLLMOp):
    """EvoPrompt DE: parents = [current, best, a, b]."""
    name, arity = "prompt_de", 4

    def request(self, ctx, group):
        cur, best, a, b = (group + group[-1:] * 4)[:4]
        return ops.de_request(cur.text, best.text, a.text, b.text, ctx.rng, temperature=self.o.temperature,
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
        return ops.opro_request(desc, [(e.input, e.output) for e in exs], [(i.text, max(0.0, i.score)) for i in traj],
                                ctx.rng, temperature=max(self.o.temperature, 1.0),
                                max_tokens=self.o.proposer_max_tokens)


@register_operator("prompt_rewrite")
class RewriteOperator(_PromptLLMOp):
    """The baseline: "rewrite this prompt so that it scores higher"."""
    name, arity = "prompt_rewrite", 1

    def request(self, ctx, group):
        return ops.rewrite_request(group[0].text, max(0.0, group[0].score), ctx.rng,
                                   temperature=self.o.temperature, max_tokens=self.o.proposer_max_tokens)


@register_operator("prompt_paraphrase")
class ParaphraseOperator(_PromptLLMOp):
    """Initial population: a paraphrase of the parent."""
    name, arity = "prompt_paraphrase", 1

    def request(self, ctx, group):
        return ops.paraphrase_request(group[0].text, ctx.rng, temperature=max(self.o.temperature, 1.0),
                                      max_tokens=self.o.proposer_max_tokens)


@register_operator("prompt_edit")
class EditOperator(Operator):
    """Word-level edit (insert / drop / swap / replace from a small vocabulary); no LLM."""
    name, arity, uses_llm, kinds = "prompt_edit", 1, False, ("prompt",)

    def __init__(self, campaign: Campaign):
        self.o = prompt_options(campaign)

    def propose(self, ctx: Context, parent_groups: list[list[Individual]]) -> list[Proposal]:
        seen = _seen(ctx)
        out = []
        for g in parent_groups:
            p = ops.fallback_edit(g[0].text, ctx.rng, seen, max_chars=self.o.max_prompt_chars)
            if p.ok:
                seen.add(ops.normalize_key(p.text))
            out.append(Proposal(p.text, self.name, (g[0].id,), raw=p.raw or None, reason=p.reason))
        return out
