"""Prompt optimization on the engine: the "prompt" candidate kind, its operators and strategies.

A campaign with ``kind = "prompt"`` names its task, task model and algorithm in ``[prompt]``
(parsed by :class:`PromptOptions`); the proposer (optimizer) model is the campaign's ``[llm]``
table, exactly as for rule discovery. Everything else (population loop, funnel, novelty
check, budgets, SQLite store, resume, show/export/report) is the engine's.

Algorithms (``[prompt] algorithm``, which selects ``[search] strategy``; the math is in
search.prompt_ops):

=========  ====================  =================================================
algorithm  strategy              children per generation (``search.batch_size``)
=========  ====================  =================================================
ga         ``evoprompt_ga``      roulette pair -> ``prompt_ga``; best N survive
de         ``evoprompt_de``      next members in turn -> ``prompt_de``; child
                                 replaces its member when at least as good
opro       ``opro``              top-k trajectory -> ``prompt_opro``; best N kept
rewrite    ``prompt_rewrite``    tournament parent -> ``prompt_rewrite``; best N
=========  ====================  =================================================

Until the population holds ``search.population`` prompts, GA, DE and rewrite first fill it
with LLM paraphrases of the best prompt (EvoPrompt's initialization; OPRO starts from the
initial prompt alone). An LLM proposal that cannot be used (format broken, empty, duplicate,
echo of the instructions, too long, LLM budget spent or backend down) is recorded with its
reason and the engine retries the slot with the random operator ``prompt_edit`` (a
word-level edit), so a campaign never stalls on a tiny proposer.

Survival compares (fidelity level, score): a child screened on the minibatch but not
promoted to the dev set ranks below every prompt scored on dev. After the search,
:func:`finalize_prompt_run` scores the top ``test_top`` prompts (by dev) and the initial
prompt on the held-out test split; the test split never takes part in any selection. The
best prompt replaces the initial one only when its dev gain passes a one-sided sign test over
the paired dev examples (``select_alpha``, default 0.1; 1.0 for plain best-by-dev).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evaluators.base import Candidate, Status

from . import prompt_ops as ops
from .campaign import Campaign
from .engine import (Context, Individual, InvalidCandidate, Job, KindPlugin, Operator, Proposal, Strategy,
                     register_kind, register_operator, register_strategy)

if TYPE_CHECKING:
    from evaluators.prompts import PromptEvaluator

    from .engine import Engine

ALGORITHM_STRATEGY = {"ga": "evoprompt_ga", "de": "evoprompt_de", "opro": "opro", "rewrite": "prompt_rewrite"}
LLM_OPERATOR = {"ga": "prompt_ga", "de": "prompt_de", "opro": "prompt_opro", "rewrite": "prompt_rewrite"}


class PromptOptions(BaseModel):
    """The ``[prompt]`` table of a prompt campaign."""
    model_config = ConfigDict(extra="forbid")

    task: str | None = None                 # a generated task (proxies.prompts.list_prompt_tasks())
    task_file: str | None = None            # or a JSONL file of {"input", "output"} lines
    metric: Literal["exact", "normalized", "contains"] | None = None  # None: the task's own
    description: str | None = None          # task description (OPRO's meta-prompt); JSONL tasks need one
    initial_prompt: str | None = None       # None: the task's plain initial prompt
    seed_prompts: list[str] = Field(default_factory=list)  # more starting prompts
    task_seed: int = 0                      # data generation seed
    sizes: dict[str, int] = Field(default_factory=dict)    # split sizes, e.g. {dev = 30, test = 60}
    task_model: dict[str, Any] | None = None  # search.llm.LLMConfig fields; None: the default (local)
    task_system: str | None = None          # optional system message for the task model
    max_tokens: int | None = Field(None, ge=1)  # task-model reply limit; None: the task's
    minibatch: int = Field(10, ge=1)        # screening subset of dev
    minibatch_seed: int = 0
    max_prompt_chars: int = Field(600, ge=10)
    algorithm: Literal["ga", "de", "opro", "rewrite"] = "ga"
    fill: bool = True                       # fill the population with LLM paraphrases first (not OPRO)
    temperature: float = Field(0.8, ge=0)   # proposer sampling temperature
    proposer_max_tokens: int = Field(96, ge=8)
    opro_top: int = Field(8, ge=1)          # prompts shown in OPRO's meta-prompt
    opro_examples: int = Field(3, ge=0)     # training examples shown in OPRO's meta-prompt
    test_top: int = Field(3, ge=0)          # prompts scored on the test split at the end
    # The best prompt must beat the initial one on dev by a one-sided sign test over the paired
    # dev examples at this level, else the initial prompt is kept (small dev splits let noise
    # win: measured in bench/results/prompts.md). 1.0 (or None from Python): plain best-by-dev,
    # as EvoPrompt and OPRO return it.
    select_alpha: float | None = Field(0.1, gt=0, le=1)

    @model_validator(mode="after")
    def _one_task(self) -> "PromptOptions":
        if (self.task is None) == (self.task_file is None):
            raise ValueError("[prompt] needs exactly one of task = \"<name>\" (a generated task) or "
                             "task_file = \"data.jsonl\" (your own input/output pairs)")
        return self


def build_task(opts: PromptOptions, base_dir: Path | str = "."):
    """The PromptTask a campaign names (generated or from its JSONL file)."""
    from proxies.prompts import generate_task, load_jsonl_task
    if opts.task is not None:
        task = generate_task(opts.task, seed=opts.task_seed, sizes=opts.sizes or None)
    else:
        p = Path(opts.task_file)
        if not p.is_absolute() and not p.exists():
            p = Path(base_dir) / p
        task = load_jsonl_task(p, metric=opts.metric or "normalized", description=opts.description or "",
                               initial_prompt=opts.initial_prompt or "Answer the input.", seed=opts.task_seed)
    if opts.initial_prompt:
        task.initial_prompt = opts.initial_prompt
    if opts.description:
        task.description = opts.description
    return task


def _opts(campaign: Campaign) -> PromptOptions:
    o = campaign.options
    if not isinstance(o, PromptOptions):
        o = PromptOptions.model_validate(campaign.prompt or {})
        campaign._options = o
    return o


# ================================================================================ kind


class PromptKind(KindPlugin):
    name = "prompt"
    options_model = PromptOptions
    default_random_ops = {"prompt_edit": 1.0}
    default_llm_ops = {"prompt_rewrite": 1.0}

    def validate(self, campaign: Campaign) -> None:
        super().validate(campaign)
        o: PromptOptions = campaign.options
        build_task(o, Path(campaign.source_path).parent if campaign.source_path else ".")  # fail early
        wanted = ALGORITHM_STRATEGY[o.algorithm]
        if "strategy" in campaign.search.model_fields_set and campaign.search.strategy != wanted:
            if campaign.search.strategy in ALGORITHM_STRATEGY.values():
                raise ValueError(f"[prompt] algorithm = {o.algorithm!r} but [search] strategy = "
                                 f"{campaign.search.strategy!r}; give one of them")
        else:
            campaign.search.strategy = wanted
        if campaign.fidelities and "test" in campaign.fidelities:
            raise ValueError("fidelities: 'test' is held out; it is scored after the search for the top "
                             "[prompt] test_top prompts. Use fidelities = [\"minibatch\", \"dev\"]")
        for f in campaign.fidelities or ():
            if f not in ("minibatch", "dev"):
                raise ValueError(f"fidelities: unknown prompt fidelity {f!r}; use minibatch and/or dev")

    def make_evaluator(self, campaign: Campaign, run_dir: Path) -> "PromptEvaluator":
        from evaluators.prompts import PromptEvaluator
        from search.llm import LLMConfig, make_llm
        o = _opts(campaign)
        task = build_task(o, Path(campaign.source_path).parent if campaign.source_path else ".")
        cfg = LLMConfig.model_validate(o.task_model or {})
        llm = make_llm(cfg, cache_dir=Path(run_dir) / "task_llm_cache")
        llm_id = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, default=str)
        return PromptEvaluator(task, llm, llm_id=llm_id, minibatch_size=o.minibatch, minibatch_seed=o.minibatch_seed,
                               max_prompt_chars=o.max_prompt_chars, system=o.task_system, metric=o.metric,
                               max_tokens=o.max_tokens)

    def seed_texts(self, campaign: Campaign) -> list[tuple[str, str]]:
        o = _opts(campaign)
        task = build_task(o, Path(campaign.source_path).parent if campaign.source_path else ".")
        return [("initial", task.initial_prompt)] + [(f"seed{i + 1}", s) for i, s in enumerate(o.seed_prompts)]

    def normalize(self, text: str) -> str:
        t = ops.clean_prompt(text) if text.lstrip().lower().startswith("<prompt") else " ".join(text.split())
        if not t:
            raise InvalidCandidate("empty prompt")
        return t

    def describe(self, text: str) -> dict[str, Any]:
        return {"size": len(text.split()), "chars": len(text)}

    def export(self, text: str, out: Path, *, name: str, info: dict[str, Any]) -> None:
        """A ``.json`` path gets the prompt with its scores and task; any other path the plain text."""
        out = Path(out)
        if out.suffix.lower() == ".json":
            data: dict[str, Any] = {"prompt": text, **info}
            run = info.get("run")
            if run:  # add the held-out test results and the task from the run, when there are some
                from .store import RunStore, db_path
                try:
                    st = RunStore(db_path(run), readonly=True)
                    try:
                        fin = st.get_meta("prompt_final") or {}
                        cand = st.candidate(int(info["candidate"])) if "candidate" in info else None
                    finally:
                        st.close()
                    data["task"] = fin.get("task")
                    data["metric"] = fin.get("metric")
                    data["test_accuracy"] = ((cand or {}).get("meta", {}).get("test") or {}).get("accuracy")
                    data["initial"] = fin.get("initial")
                except Exception as e:  # noqa: BLE001 - the prompt itself is what matters
                    data["note"] = f"run details unavailable: {e}"
            out.write_text(json.dumps(data, indent=2, default=str) + "\n")
        else:
            out.write_text(text.rstrip() + "\n")

    def finalize(self, engine: "Engine") -> dict[str, Any]:
        return finalize_prompt_run(engine)

    def selected_id(self, view: Any) -> int | None:
        """The final prompt: the initial one when the top prompt's dev gain was not significant."""
        return ((_final(view) or {}).get("best") or {}).get("id")

    def show_lines(self, view: Any) -> list[str]:
        """Text lines for ``optforge show``: test accuracy of the best prompt next to the initial one."""
        return prompt_show_lines(view)

    def report_sections(self, view: Any) -> list[str]:
        """HTML for ``optforge report``: test table and best dev score over generations."""
        return prompt_report_sections(view)


register_kind(PromptKind())


# =========================================================================== operators


def _seen(ctx: Context) -> set[str]:
    return {ops.normalize_key(i.text) for i in ctx.history.values()} | {
        ops.normalize_key(i.text) for i in ctx.population}


def _task(ctx: Context):
    return getattr(ctx.evaluator, "task", None)


class _PromptLLMOp(Operator):
    """Builds one proposer request per parent group, sends them as one batch, parses each reply."""
    uses_llm = True
    kinds = ("prompt",)

    def __init__(self, campaign: Campaign):
        self.campaign = campaign
        self.o = _opts(campaign)

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
        self.o = _opts(campaign)

    def propose(self, ctx: Context, parent_groups: list[list[Individual]]) -> list[Proposal]:
        seen = _seen(ctx)
        out = []
        for g in parent_groups:
            p = ops.fallback_edit(g[0].text, ctx.rng, seen, max_chars=self.o.max_prompt_chars)
            if p.ok:
                seen.add(ops.normalize_key(p.text))
            out.append(Proposal(p.text, self.name, (g[0].id,), raw=p.raw or None, reason=p.reason))
        return out


# ========================================================================== strategies


def _weights(pop: list[Individual]) -> list[float]:
    """Roulette weights: the score at the member's level, floored at 0 (failures weigh least)."""
    return [max(0.0, i.score) for i in pop]


class _PromptStrategy(Strategy):
    llm_op = "prompt_rewrite"

    def __init__(self, campaign: Campaign):
        super().__init__(campaign)
        self.size = campaign.search.population
        self.o = _opts(campaign)

    def op(self, ctx: Context, name: str) -> str:
        return name if ctx.llm_available() else "prompt_edit"

    def fill(self, ctx: Context, n: int) -> list[Job]:
        """Paraphrase jobs while the population is short (EvoPrompt's initial population)."""
        pop = ctx.top(len(ctx.population), ctx.population)
        missing = self.size - len(pop)
        if not self.o.fill or missing <= 0 or not pop:
            return []
        return [Job(self.op(ctx, "prompt_paraphrase"), [pop[k % len(pop)]]) for k in range(min(n, missing))]

    def survive(self, ctx: Context, population: list[Individual], children: list[Individual]) -> list[Individual]:
        """The best ``population`` of parents and children by (fidelity level, score)."""
        ids = {m.id for m in population}
        return ctx.top(self.size, list(population) + [c for c in children if c.id not in ids])

    def restart(self, ctx: Context, best: Individual) -> list[Individual]:
        return ctx.top(self.size, ctx.population)


@register_strategy("evoprompt_ga")
class EvoPromptGA(_PromptStrategy):
    """Roulette selection of two parents per child; best N of parents + children survive."""
    name = "evoprompt_ga"

    def plan(self, ctx: Context, n: int) -> list[Job]:
        jobs = self.fill(ctx, n)
        if jobs:
            return jobs
        pop = list(ctx.population)
        if len(pop) < 2:
            return [Job(self.op(ctx, "prompt_paraphrase" if self.o.fill else "prompt_edit"), pop[:1])
                    for _ in range(n)] if pop else []
        w = _weights(pop)
        out = []
        for _ in range(n):
            i, j = ops.roulette(w, ctx.rng, 2)
            a, b = sorted((pop[i], pop[j]), key=lambda m: m.rank_key(), reverse=True)
            out.append(Job(self.op(ctx, "prompt_ga"), [a, b]))
        return out


@register_strategy("evoprompt_de")
class EvoPromptDE(_PromptStrategy):
    """Each member in turn gets a DE child (parents [current, best, a, b]); the child replaces it
    when it ranks at least as high (fidelity level first, then score)."""
    name = "evoprompt_de"

    def plan(self, ctx: Context, n: int) -> list[Job]:
        jobs = self.fill(ctx, n)
        if jobs:
            return jobs
        pop = list(ctx.population)
        if not pop:
            return []
        best = ctx.top(1, pop)[0]
        out = []
        for _ in range(n):
            c = int(self.state.get("cursor", 0)) % len(pop)
            self.state["cursor"] = c + 1
            cur = pop[c]
            others = [m for m in pop if m.id != cur.id] or [cur]
            a, b = (ctx.rng.sample(others, 2) if len(others) >= 2 else (others[0], others[0]))
            out.append(Job(self.op(ctx, "prompt_de"), [cur, best, a, b]))
        return out

    def survive(self, ctx: Context, population: list[Individual], children: list[Individual]) -> list[Individual]:
        pop = list(population)
        for ch in children:
            if any(m.id == ch.id for m in pop):
                continue
            if len(pop) < self.size:
                pop.append(ch)
                continue
            slot = next((k for k, m in enumerate(pop) if ch.parents and m.id == ch.parents[0]), None)
            if slot is not None and ch.rank_key() >= pop[slot].rank_key():
                pop[slot] = ch
        return pop


@register_strategy("opro")
class OPRO(_PromptStrategy):
    """Each child sees the top ``opro_top`` prompts evaluated so far (the trajectory, with scores)."""
    name = "opro"

    def plan(self, ctx: Context, n: int) -> list[Job]:
        traj = ctx.top(self.o.opro_top)
        if not traj:
            return []
        return [Job(self.op(ctx, "prompt_opro"), list(traj)) for _ in range(n)]


@register_strategy("prompt_rewrite")
class Rewrite(_PromptStrategy):
    """Tournament parent -> "rewrite it to score higher"; best N survive (the baseline)."""
    name = "prompt_rewrite"

    def plan(self, ctx: Context, n: int) -> list[Job]:
        jobs = self.fill(ctx, n)
        if jobs:
            return jobs
        pop = list(ctx.population)
        if not pop:
            return []
        w = [m.rank_key() for m in pop]
        out = []
        for _ in range(n):
            idx = ctx.rng.sample(range(len(pop)), min(self.campaign.search.tournament, len(pop)))
            out.append(Job(self.op(ctx, "prompt_rewrite"), [pop[max(idx, key=lambda k: w[k])]]))
        return out


# ============================================================================ finalize


def finalize_prompt_run(engine: "Engine") -> dict[str, Any]:
    """Score the top ``test_top`` prompts (ranked on dev) and the initial prompt on the test split.

    Results go into each candidate's ``meta["test"]`` (accuracy, per-example scores) and into the
    run's ``prompt_final`` meta entry (used by show/report/export); an event records it. Costs no
    search budget. Returns the ``prompt_final`` dict.
    """
    o = _opts(engine.campaign)
    ev = engine.evaluator
    top = engine.ctx.top(max(0, o.test_top))
    seeds = [i for i in engine.individuals.values() if i.operator == "seed" and i.meta.get("seed") == "initial"]
    initial = seeds[0] if seeds else None
    chosen = list(top) + ([initial] if initial is not None and initial.id not in {i.id for i in top} else [])
    rows = []
    test_examples = ev.examples("test")[1]
    if chosen:
        results = ev.evaluate([Candidate(kind="prompt", text=i.text) for i in chosen], "test")
        for ind, r in zip(chosen, results):
            tr = next(iter(r.tasks.values()), None)
            preds = tr.extra.get("predictions") if tr else None
            info = {"accuracy": r.score if r.status == Status.ok else None, "status": r.status.value,
                    "reason": r.reason, "n": len(tr.extra.get("per_example", [])) if tr else 0,
                    "per_example": tr.extra.get("per_example") if tr else None,
                    "predictions": preds, "tokens": r.tokens,
                    "normalized_accuracy": _strict_accuracy(preds, test_examples) if r.status == Status.ok
                    else None}
            ind.meta["test"] = info
            engine.store.update_candidate_meta(ind.id, dict(ind.meta))
            dev = ind.results.get("dev")
            rows.append({"id": ind.id, "text": ind.text, "operator": ind.operator,
                         "dev": dev.score if dev is not None and dev.ok else None,
                         "test": info["accuracy"], "test_normalized": info["normalized_accuracy"],
                         "initial": ind is initial})
    best = rows[0] if top else None
    ini_row = next((r for r in rows if r["initial"]), None)
    selection = None
    if best is not None and ini_row is not None and best is not ini_row and o.select_alpha is not None:
        selection = dev_sign_test(chosen[0], initial, o.select_alpha)
        if selection["kept_initial"]:
            best = ini_row
    final = {"task": ev.task.name, "metric": ev.metric, "algorithm": o.algorithm,
             "best": best, "initial": ini_row, "tested": rows, "top_by_dev": rows[0] if top else None,
             "selection": selection, "task_model_tokens": ev.tokens, "task_model_requests": ev.requests}
    engine.store.set_meta(prompt_final=final)
    if best is not None:
        ini = final["initial"]
        engine.event("prompt_final", f"test accuracy: best #{best['id']} {best['test']}, initial "
                                     f"{ini['test'] if ini else 'n/a'}", **{k: v for k, v in final.items()
                                                                            if k != "tested"})
    return final


def _dev_per_example(ind: Individual) -> list[float] | None:
    r = ind.results.get("dev")
    tr = next(iter(r.tasks.values()), None) if r is not None and r.ok else None
    return list(tr.extra.get("per_example") or []) if tr is not None else None


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided sign test: P(X >= wins) for X ~ Binomial(wins + losses, 1/2); ties are dropped."""
    n = wins + losses
    return 1.0 if n == 0 else sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n


def dev_sign_test(top: Individual, initial: Individual, alpha: float) -> dict[str, Any]:
    """Does ``top`` beat ``initial`` on the paired dev examples? Keep the initial prompt unless
    the one-sided sign test gives p <= alpha (a 20-example dev split cannot tell one example
    of gain from noise: p = 0.5)."""
    a, b = _dev_per_example(top), _dev_per_example(initial)
    if not a or not b or len(a) != len(b):
        return {"test": "sign", "alpha": alpha, "p": None, "kept_initial": False,
                "why": "no paired dev scores for both prompts; kept the best by dev"}
    wins = sum(x > y for x, y in zip(a, b))
    losses = sum(x < y for x, y in zip(a, b))
    p = sign_test_p(wins, losses)
    kept = p > alpha
    why = (f"#{top.id} beat the initial prompt on {wins} dev example(s) and lost {losses} "
           f"(sign test p = {p:.3g} {'>' if kept else '<='} {alpha:g}): "
           + ("kept the initial prompt" if kept else "the gain is significant"))
    return {"test": "sign", "alpha": alpha, "wins": wins, "losses": losses, "p": p,
            "kept_initial": kept, "why": why}


def _strict_accuracy(preds: list[str] | None, examples) -> float | None:
    """Accuracy of stored predictions under the strict instruction-induction match ("normalized":
    first line, lower case, punctuation removed, equal to the target), whatever the campaign's
    metric, so a lenient "contains" score can be read next to the strict one. None for label tasks'
    missing predictions."""
    from proxies.prompts import match
    if not preds or len(preds) != len(examples):
        return None
    return sum(match(p, ex.targets, "normalized") for p, ex in zip(preds, examples)) / len(examples)


# ============================================================================ show / report


def _final(view: Any) -> dict[str, Any] | None:
    return view.store.get_meta("prompt_final")


def prompt_show_lines(view: Any) -> list[str]:
    """``task: initial test acc -> best test acc`` plus the tested prompts (reads the run only)."""
    fin = _final(view)
    if not fin:
        return ["prompt run: no test results yet (the search has not finished; they are computed at the end)"]
    fmt = (lambda v: "n/a" if v is None else f"{100 * v:.1f}%")
    ini, best = fin.get("initial") or {}, fin.get("best") or {}
    lines = [f"task {fin['task']} (metric {fin['metric']}, algorithm {fin['algorithm']}): test accuracy "
             f"initial {fmt(ini.get('test'))} -> best {fmt(best.get('test'))}"]
    if fin.get("metric") not in ("normalized", "label") and (ini.get("test_normalized") is not None
                                                             or best.get("test_normalized") is not None):
        lines.append(f"  strict normalized exact match on the same predictions: initial "
                     f"{fmt(ini.get('test_normalized'))} -> best {fmt(best.get('test_normalized'))}")
    sel = fin.get("selection") or {}
    how = "kept: no significant dev gain" if sel.get("kept_initial") else f"by dev {fmt(best.get('dev'))}"
    lines += [
             f"  initial prompt: {ini.get('text', '?')}",
             f"  best prompt (#{best.get('id', '?')}, {how}): {best.get('text', '?')}"]
    if sel.get("why"):
        lines.append(f"  selection: {sel['why']}")
    lines.append("  tested on the held-out split:")
    for r in fin.get("tested", []):
        tag = " (initial)" if r.get("initial") else ""
        lines.append(f"    #{r['id']:<4} dev {fmt(r.get('dev')):>6}  test {fmt(r.get('test')):>6}  "
                     f"{r.get('operator', '')}{tag}: {r['text']}")
    return lines


def best_dev_curve(view: Any, fidelity: str = "dev") -> list[tuple[int, float]]:
    """(generation, best score at ``fidelity`` so far) for a run."""
    gens: dict[int, float] = {}
    for c in view.individuals:
        r = c["results"].get(fidelity)
        if r is not None and r.status == Status.ok:
            gens[c["generation"]] = max(gens.get(c["generation"], float("-inf")), r.score)
    out, best = [], float("-inf")
    for g in sorted(gens):
        best = max(best, gens[g])
        out.append((g, best))
    return out


def prompt_report_sections(view: Any) -> list[str]:
    import html as _html
    out = ["<h2>Prompt optimization</h2><pre>" + _html.escape("\n".join(prompt_show_lines(view))) + "</pre>"]
    curve = best_dev_curve(view)
    if curve:
        import matplotlib.pyplot as plt

        from .prompt_compare import calls_curve
        from .report import _png
        alg = (view.campaign.get("prompt") or {}).get("algorithm", "ga")
        by_calls = [(k, v) for k, v in calls_curve(view) if v is not None]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
        axes[0].step([g for g, _ in curve], [100 * v for _, v in curve], where="post", label=alg)
        axes[0].set_xlabel("generation")
        axes[1].step([k for k, _ in by_calls], [100 * v for _, v in by_calls], where="post", label=alg)
        axes[1].set_xlabel("proposer calls")
        for ax in axes:
            ax.set_ylabel("best dev accuracy (%)")
            ax.legend()
        out.append("<h3>Best dev accuracy over iterations</h3>" + _png(fig)
                   + "<p>Compare optimizers: <code>optforge report RUN_GA RUN_DE RUN_OPRO</code>.</p>")
    return out
