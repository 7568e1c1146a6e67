"""LLM-proposed operators for update rules: mutation (one parent) and crossover (two).

The prompt shows the DSL reference (``dsl.reference_text()``), a few of the best programs
found so far with their scores, the parent(s) with score and per-task metrics, and asks for
one new program in a ```python block. When ``llm_ops.grammar`` is on, requests carry
``grammar="dsl"`` so backends that support constrained decoding only emit DSL programs.

The reply is text and is treated as such: :func:`extract_candidates` pulls code out of it
defensively (fenced blocks, then an unclosed fence, then a bare ``def``), and the only thing
that ever reads the code is ``dsl.parse`` via the kind's ``normalize`` (the security
boundary); nothing is executed. A refused proposal gets one repair request that sends the
error back (``llm_ops.repair``); what is still refused is recorded with its reason and the
raw reply. All requests of a generation go to the backend as one batch.

Directed mutations (``llm_ops.hints``): a small model asked to "improve" a program mostly
copies it back (measured with the embedded 135M model: most replies were the parent or the
parent minus its update line). Each mutation request therefore names one concrete change,
drawn with the engine's seeded RNG from :data:`MUTATION_HINTS` (sign of the update as in
Lion, a second moment as in Adam, rms normalization, clipping, orthogonalization as in
Muon, Nesterov-style interpolation, ...). A strong model may still do something else.

Grammar-constrained decoding fixes the signature to the names in ``grammar_names``. A hint
that needs a new state tensor adds one (a fresh name) to the parent's signature; a
crossover offers the union of both parents' signatures, so the child can use either
parent's state tensors and hyperparameters.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import dsl
from dsl.primitives import SCALAR_INPUTS
from evaluators.base import EvalResult
from search.core import (
    Campaign,
    Context,
    Individual,
    InvalidCandidate,
    Operator,
    Proposal,
    fmt_score,
    register_operator,
)
from search.llm import ChatRequest, Message
from search.llm.grammar import EXTRA_TEMPS, dsl_grammar_names, grammar_supports

SYSTEM = ("You are an expert in deep-learning optimization. You write optimizer update rules in a small "
          "Python-like DSL. Reply with exactly one complete program in a ```python code block.")

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)```", re.S)
_OPEN_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n(.*)\Z", re.S)


def _bare_def(text: str) -> str | None:
    """From the first line starting with 'def ' through its indented body."""
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        if ln.lstrip().startswith("def "):
            indent = len(ln) - len(ln.lstrip())
            out = [ln[indent:]]
            for nxt in lines[i + 1:]:
                if nxt.strip() and (len(nxt) - len(nxt.lstrip())) <= indent:
                    break
                out.append(nxt[indent:] if len(nxt) >= indent else nxt)
            return "\n".join(out).rstrip() + "\n"
    return None


def extract_candidates(text: str) -> list[str]:
    """Code snippets that may hold the program, most likely first (never executed)."""
    if not isinstance(text, str) or not text.strip():
        return []
    out: list[str] = []
    blocks = [b for _lang, b in _FENCE.findall(text)]
    with_def = [b for b in blocks if "def " in b]
    out.extend(reversed(with_def))  # a model that echoes the parent first writes its own last
    if not blocks:
        m = _OPEN_FENCE.search(text)
        if m and "def " in m.group(1):
            out.append(m.group(1).replace("```", ""))
    bare = _bare_def(text)
    if bare:
        out.append(bare)
    seen, uniq = set(), []
    for c in out:
        c = c.strip("\n") + "\n"
        if c not in seen:
            seen.add(c)
            uniq.append(c)
    return uniq


def extract_program(text: str, normalize) -> tuple[str | None, str]:
    """(canonical text, "") for the first snippet ``normalize`` accepts, else (None, reason)."""
    cands = extract_candidates(text)
    if not cands:
        return None, "no code found in the reply (expected a ```python block with a def)"
    first_err = ""
    for c in cands:
        try:
            return normalize(c), ""
        except InvalidCandidate as e:
            first_err = first_err or str(e)
    return None, first_err


def describe_result(r: EvalResult | None) -> str:
    """One line per task: metric vs tuned AdamW, tuned lr, relative score."""
    if r is None:
        return "  (not evaluated)"
    if not r.tasks:
        return f"  {r.status.value}: {r.reason}"
    lines = []
    for name, t in r.tasks.items():
        base = f", AdamW {t.baseline:.4g}" if t.baseline is not None else ""
        lr = f", lr {t.best_lr:.3g}" if t.best_lr is not None else ""
        st = "" if t.status.value == "ok" else f" [{t.status.value}: {t.reason[:80]}]"
        lines.append(f"  {name}: {t.metric_name} {t.metric:.4g}{base}{lr}, score {fmt_score(t.score)}{st}")
    return "\n".join(lines)


def _best_result(ind: Individual, fidelities: Sequence[str]) -> EvalResult | None:
    for f in reversed(fidelities):
        if f in ind.results:
            return ind.results[f]
    return None


def _program_block(ind: Individual, ctx: Context, with_metrics: bool) -> str:
    r = _best_result(ind, ctx.fidelities)
    head = f"score {fmt_score(ind.score)}" + (f" at fidelity '{r.fidelity}'" if r else "")
    body = f"```python\n{ind.text.rstrip()}\n```"
    if with_metrics:
        return f"{head}\nper task:\n{describe_result(r)}\n{body}"
    return f"{head}\n{body}"


#: (hint, needs a new state tensor) for directed LLM mutations; ``{v}`` is the new state's name.
MUTATION_HINTS: tuple[tuple[str, bool], ...] = (
    ("apply the update through sign(), as Lion does: w = w - lr * sign(<update>)", False),
    ("keep a second-moment estimate as a new state tensor, {v} = interp(square(g), {v}, 0.999), and divide "
     "the update by sqrt({v}) + 1e-8, as Adam does", True),
    ("normalize the update by its root mean square: <update> / (rms(<update>) + 1e-8)", False),
    ("clip the update elementwise with clip(<update>, 1.0)", False),
    ("orthogonalize the momentum before applying it: w = w - lr * orthogonalize(<momentum>), as Muon does", False),
    ("use a Nesterov-style look-ahead: apply interp(g, <momentum>, 0.9) instead of the momentum alone", False),
    ("change one constant or hyperparameter default to a better value", False),
    ("add decoupled weight decay as its own step: w = w - lr * wd * w", False),
    ("normalize each row of the update with row_normalize(<update>)", False),
    ("keep an exponential moving average of the gradient as a new state tensor, {v} = interp(g, {v}, 0.9), "
     "and use it in the update", True),
    ("remove one statement that does not help, keeping the rule correct", False),
    ("divide the update by (abs(<update>) + 1e-8) raised to a power such as 0.5", False),
)


def _fresh_state(parent_text: str) -> str:
    used = set(dsl.parse(parent_text).arg_names) | {s.target for s in dsl.parse(parent_text).body}
    for n in ("v", "s", "v2", "s2", "v3"):
        if n not in used:
            return n
    return "state_new"


def _in_grammar(text: str) -> bool:
    try:
        return grammar_supports(dsl.parse(text))
    except dsl.DSLError:
        return True  # the grammar then writes a fresh, valid program


def grammar_names_for(parents: Sequence[str], new_state: str | None = None) -> list[str]:
    """``grammar_names`` for a child of ``parents`` (DSL texts): the union of their signatures
    (tensors first: w, g, every state tensor, then lr/wd/step, then the hyperparameters), an
    optional new state tensor, then temporaries: the parents' own first, then the generic
    extras, five at most (the grammar grows as 2**temporaries)."""
    progs = [dsl.parse(t) for t in parents]
    states: list[str] = []
    scalars: list[str] = []
    hypers: dict[str, float] = {}
    for p in progs:
        for a in p.args:
            if a.name in ("w", "g"):
                continue
            if a.default is not None:
                hypers.setdefault(a.name, a.default)
            elif a.name in SCALAR_INPUTS:
                if a.name not in scalars:
                    scalars.append(a.name)
            elif a.name not in states:
                states.append(a.name)
    if new_state is not None and new_state not in states:
        states.append(new_state)
    taken = set(states) | set(scalars) | set(hypers) | {"w", "g"}
    sig = ["w", "g"] + states + [n for n in SCALAR_INPUTS if n in scalars] \
        + [f"{k}={v!r}" for k, v in hypers.items()]
    temps: list[str] = []
    for p in progs:   # each parent's own temporaries first, then the generic extras
        for e in dsl_grammar_names(p, max_temps=8):
            name = e.split(":", 1)[0]
            if ":" in e and name not in taken:
                taken.add(name)
                temps.append(e)
    temps.sort(key=lambda e: e in EXTRA_TEMPS)   # stable: extras last
    return sig + temps[:5]


def build_prompt(ctx: Context, parents: Sequence[Individual], top_k: int, hint: str | None = None) -> str:
    """The user message for a mutation (one parent) or crossover (two); ``hint`` names the change."""
    parts = ["# The DSL\n" + dsl.reference_text(),
             "# Scoring\nA rule is trained on small proxy tasks with its learning rate tuned on a grid. Its score "
             "is the mean over tasks of log(AdamW loss / rule loss), both tuned: 0 means as good as tuned "
             "AdamW, +0.1 means about 10% lower loss. Higher is better."]
    ids = {p.id for p in parents}
    top = [i for i in ctx.top(top_k + len(parents)) if i.id not in ids][:top_k]
    if top:
        parts.append("# Some of the best programs so far\n" + "\n\n".join(_program_block(i, ctx, False) for i in top))
    if len(parents) == 1:
        parts.append("# Parent program\n" + _program_block(parents[0], ctx, True))
        change = (f"Change the parent program this way: {hint}." if hint else
                  "Write ONE new program that changes the parent in a meaningful way (a new normalization, a "
                  "different momentum, clipping, sign, a new state tensor, ...) so that it trains better.")
        parts.append("# Task\n" + change + " Keep the line that updates w. Follow the DSL exactly: end with "
                     "`return w, <every state tensor in signature order>`. Reply with the whole new program "
                     "in a ```python block.")
    else:
        parts.append("# Parent A\n" + _program_block(parents[0], ctx, True))
        parts.append("# Parent B\n" + _program_block(parents[1], ctx, True))
        parts.append("# Task\nWrite ONE new program that combines the best ideas of parent A and parent B "
                     "into one rule that trains better than both. Follow the DSL exactly: end with "
                     "`return w, <every state tensor in signature order>`. Reply with the program in a "
                     "```python block.")
    return "\n\n".join(parts)


def _meta(hint: str | None) -> dict[str, Any]:
    return {"llm": True, "hint": hint} if hint else {"llm": True}


class LLMRuleOperator(Operator):
    """Shared by mutation and crossover: batch the requests, extract, repair once."""
    uses_llm = True
    kinds = ("rule",)

    def __init__(self, name: str, arity: int, campaign: Campaign):
        self.name, self.arity, self.campaign = name, arity, campaign

    def _request(self, ctx: Context, messages: list[Any], parents: Sequence[Individual],
                 new_state: str | None = None) -> Any:
        o = self.campaign.llm_ops
        extra: dict[str, Any] = {}
        # a parent with shaped state or matrix algebra lies outside the grammar: no constraint then
        use_grammar = o.grammar and all(_in_grammar(p.text) for p in parents)
        if use_grammar and "grammar_names" in ChatRequest.model_fields:
            try:  # names the grammar allows: the parents' signatures (+ a new state) and temporaries
                extra["grammar_names"] = grammar_names_for([p.text for p in parents], new_state)
            except Exception:  # noqa: BLE001 - the backend's default names then
                pass
        return ChatRequest(messages=messages, temperature=o.temperature, max_tokens=o.max_tokens,
                           seed=ctx.rng.randrange(2 ** 31), grammar="dsl" if use_grammar else None,
                           purpose=self.name, **extra)

    def propose(self, ctx: Context, parent_groups: list[list[Individual]]) -> list[Proposal]:
        o = self.campaign.llm_ops
        pids = [tuple(p.id for p in g[: self.arity]) for g in parent_groups]
        hints: list[tuple[str | None, str | None]] = []   # (hint text, new state name)
        for g in parent_groups:
            if self.arity == 1 and o.hints:
                text, needs_state = MUTATION_HINTS[ctx.rng.randrange(len(MUTATION_HINTS))]
                v = _fresh_state(g[0].text) if needs_state else None
                hints.append((text.replace("{v}", v or "v"), v))
            else:
                hints.append((None, None))
        convs = [[Message(role="system", content=SYSTEM),
                  Message(role="user", content=build_prompt(ctx, g[: self.arity], o.top_k, h))]
                 for g, (h, _v) in zip(parent_groups, hints)]
        reqs = [self._request(ctx, c, g[: self.arity], v) for c, g, (_h, v) in zip(convs, parent_groups, hints)]
        resp = ctx.llm_chat(reqs, self.name)
        if resp is None:
            return [Proposal(None, self.name, p, reason="LLM unavailable", meta={"skip": True}) for p in pids]
        out: list[Proposal | None] = [None] * len(parent_groups)
        retry: list[tuple[int, str, str]] = []   # (index, reply, error)
        for k, r in enumerate(resp):
            if k >= len(reqs):
                break
            if r.error:
                out[k] = Proposal(None, self.name, pids[k], raw=None, reason=f"LLM error: {r.error}",
                                  meta={"skip": True})
                continue
            text, why = extract_program(r.text, ctx.kind.normalize)
            if text is not None:
                out[k] = Proposal(text, self.name, pids[k], raw=r.text, meta=_meta(hints[k][0]))
            elif o.repair:
                retry.append((k, r.text, why))
            else:
                out[k] = Proposal(None, self.name, pids[k], raw=r.text, reason=why, meta=_meta(hints[k][0]))
        for k in range(len(resp), len(parent_groups)):  # requests cut by the LLM call budget
            out[k] = Proposal(None, self.name, pids[k], reason="LLM call budget spent", meta={"skip": True})
        if retry:
            rreqs = []
            for k, reply, why in retry:
                msgs = convs[k] + [Message(role="assistant", content=reply[:4000]),
                                   Message(role="user", content=(
                                       f"The DSL checker refused that program: {why}\nFix it. Reply with the "
                                       "corrected program only, in a ```python block."))]
                rreqs.append(self._request(ctx, msgs, parent_groups[k][: self.arity], hints[k][1]))
            rresp = ctx.llm_chat(rreqs, self.name + ":repair") or []
            for t, (k, reply, why) in enumerate(retry):
                r2 = rresp[t] if t < len(rresp) else None
                raw = reply + ("\n----- repair -----\n" + r2.text if r2 is not None and not r2.error else "")
                if r2 is None or r2.error:
                    out[k] = Proposal(None, self.name, pids[k], raw=raw, reason=why, meta=_meta(hints[k][0]))
                    continue
                text, why2 = extract_program(r2.text, ctx.kind.normalize)
                if text is not None:
                    out[k] = Proposal(text, self.name, pids[k], raw=raw,
                                      meta=_meta(hints[k][0]) | {"repaired": True})
                else:
                    out[k] = Proposal(None, self.name, pids[k], raw=raw,
                                      reason=f"{why}; after repair: {why2}", meta=_meta(hints[k][0]))
        return [p for p in out]  # type: ignore[misc]


register_operator("llm_mutate", lambda c: LLMRuleOperator("llm_mutate", 1, c))
register_operator("llm_crossover", lambda c: LLMRuleOperator("llm_crossover", 2, c))
