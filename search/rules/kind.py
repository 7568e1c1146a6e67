"""The ``rule`` candidate kind: DSL update rules scored by ``evaluators.RuleEvaluator``.

- seeds: ``campaign.seed_rules`` entries are ``dsl.library`` names (``adamw``,
  ``sgd_momentum``, ...) or paths to files holding one DSL rule;
- normalize: ``dsl.parse`` (the security boundary), the checker's loop-carried liveness, and
  the canonical ``Program.source()``. Programs whose update never reads ``g`` or never
  changes ``w`` are refused before training (nothing to learn from them: the Lion paper's
  abstract-execution filter), and so are programs that change ``w`` at ``lr = 0`` (a step the
  lr sweep cannot tune: :func:`moves_without_lr`);
- the evaluator: the campaign's ``tasks``, ``lrs``, ``eval_seeds``, ``executor`` and
  ``[evaluator]`` table become ``evaluators.RuleEvalConfig``; its result cache lives in
  ``<run_dir>/eval_cache/`` unless ``[evaluator] cache_dir`` names another place;
- export: ``dsl.export_python`` (a standalone torch module) of the simplified rule.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import dsl
import proxies
from dsl import library
from dsl.checker import liveness
from dsl.export import export_python
from evaluators import WORST_SCORE, RuleEvalConfig, RuleEvaluator
from evaluators import noise_floors as measure_noise_floors
from search.core import (
    Campaign,
    Individual,
    InvalidCandidate,
    KindPlugin,
    did_you_mean,
    fmt_score,
    register_kind,
    simplify_one,
)

from .ablations import rule_ablations
from .bank_track import bank_lines, track_validation
from .mutations import DEFAULT_WEIGHTS
from .task_eval import TaskSetEvaluator
from .tasksets import (
    BankPlan,
    bank_plan,
    check_task_sets,
    search_tasks,
    validation_config_dict,
    validation_tasks,
    with_tuning_defaults,
)


def moves_without_lr(program, steps: int = 3) -> bool:
    """Does the rule change ``w`` when ``lr = 0``?

    Scores compare rules at their tuned lr; a step that does not scale with lr (``w = w - g``
    next to ``w = w - lr * u``) is a fixed second step size that the lr sweep cannot tune away
    and the baselines do not have, and searches exploit it (measured: bench/results/discovery.md).
    Checked by running the rule a few steps on fixed pseudo-random inputs at lr = 0, wd = 0.1;
    a non-finite result (a rule dividing by lr) is left to the evaluator.
    """
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    w, state = w0.clone(), {}
    with torch.no_grad():
        for t in range(1, steps + 1):
            g = torch.randn(5, 4, generator=gen, dtype=torch.float64)
            w, state = dsl.run_rule(program, w, g, state, lr=0.0, wd=0.1, step=t)
    if not bool(torch.isfinite(w).all()):
        return False
    return not torch.allclose(w, w0, rtol=1e-12, atol=1e-12)


def eval_config_dict(c: Campaign, run_dir: Path | None) -> dict[str, Any]:
    """The campaign's evaluator settings as a ``RuleEvalConfig`` dict (``run_dir``: where its cache goes)."""
    d: dict[str, Any] = dict(c.evaluator)
    if d.get("split", "val") == "test":  # the search selects on these scores: test must stay unseen
        raise ValueError("evaluator.split = \"test\": a campaign selects rules on its scores, so scoring "
                         "them on the test split would leak it into the selection. Campaigns score on "
                         "\"val\" (remove the field); report a finished run's rules on test with "
                         "`optforge eval RULE --split test`")
    d = with_tuning_defaults(d)
    plan = bank_plan(c)
    d["tasks"] = search_tasks(c) if plan is None else plan.generation_tasks(0)
    if c.eval_seeds is not None:
        d["seeds"] = list(c.eval_seeds)
    if c.lrs is not None:
        d["lr_grid"] = {"values": list(c.lrs)}
    if c.executor is not None:
        d["executor"] = c.executor
    if run_dir is not None and "cache_dir" not in d:
        d["cache_dir"] = str(run_dir / "eval_cache")
    return d


def rule_text(entry: str, base: Path | None = None) -> tuple[str, str]:
    """(label, source) of a seed: a library name, or a path to a rule file."""
    if entry in library.RULES:
        return entry, dsl.get_rule(entry).source()
    p = Path(entry)
    if not p.is_absolute() and base is not None and not p.exists():
        p = base / p
    if p.is_file():
        return p.stem, p.read_text(encoding="utf-8")
    raise ValueError(f"seed_rules: {entry!r} is neither a library rule nor a readable file"
                     f"{did_you_mean(entry, library.RULES)}; library rules: {', '.join(library.RULES)}")


class RuleKind(KindPlugin):
    name = "rule"
    options_model = None
    default_random_ops = dict(DEFAULT_WEIGHTS)
    default_llm_ops = {"llm_mutate": 1.0, "llm_crossover": 0.5}
    score_label = "score vs tuned AdamW"
    syntax = "python"
    supports_rungs = True

    def validate(self, campaign: Campaign) -> None:
        super().validate(campaign)
        check_task_sets(campaign)
        cfg = RuleEvalConfig.model_validate(eval_config_dict(campaign, None))
        known = tuple(proxies.FIDELITIES)
        for f in campaign.fidelities or ():
            if f not in known:
                raise ValueError(f"fidelities: unknown fidelity {f!r}; known: {', '.join(known)}")
        if campaign.fidelities is not None:
            if not campaign.fidelities:
                raise ValueError("fidelities: give at least one fidelity")
            order = [known.index(f) for f in campaign.fidelities]
            if order != sorted(order) or len(set(order)) != len(order):
                raise ValueError(f"fidelities: list them once each, cheapest first ({', '.join(known)})")
        levels = list(campaign.fidelities or known)
        for f in campaign.funnel.rungs:
            if f not in levels:
                raise ValueError(f"funnel.rungs: {f!r} is not one of the campaign's fidelities ({', '.join(levels)})")
            if f == levels[0]:
                raise ValueError(f"funnel.rungs: {f!r} is the cheapest fidelity, where every child is screened; "
                                 "put those tasks in search_tasks, and rungs on the fidelities promoted to")
        if not campaign.seed_rules:
            raise ValueError("seed_rules: give at least one seed rule (e.g. \"adamw\")")
        base = Path(campaign.source_path).parent if campaign.source_path else None
        for s in campaign.seed_rules:
            label, text = rule_text(s, base)
            try:
                dsl.parse(text)
            except dsl.DSLError as e:
                raise ValueError(f"seed_rules: {s!r} is not a valid rule: {e}") from None
        del cfg

    def make_evaluator(self, campaign: Campaign, run_dir: Path):
        """A ``RuleEvaluator``; a ``TaskSetEvaluator`` when the tasks change per generation (``[bank]``)
        or per fidelity (``[funnel.rungs]``)."""
        cfg = RuleEvalConfig.model_validate(eval_config_dict(campaign, run_dir))
        plan = bank_plan(campaign)
        if plan is None and not campaign.funnel.rungs:
            return RuleEvaluator(cfg)
        return TaskSetEvaluator(cfg, plan.aggregate if plan else "mean", rungs=campaign.funnel.rungs,
                                banked=plan is not None)

    def block_evaluator(self, evaluator, block: int):
        """Seed block ``block`` of a race (``[funnel] mode = "race"``): the search's protocol (rungs
        included) on as many other seeds, from 1000 above the search's highest (clear of the validation
        stage's and verify's), on the same workers and cache; None in a bank campaign."""
        if not isinstance(evaluator, (RuleEvaluator, TaskSetEvaluator)):
            return None
        seeds = list(evaluator.config.seeds)
        start = max(seeds) + 1000 + (block - 1) * len(seeds)
        fresh = list(range(start, start + len(seeds)))
        if isinstance(evaluator, TaskSetEvaluator):
            return evaluator.with_seeds(fresh)
        cfg = evaluator.config.model_copy(update={"seeds": fresh})
        return RuleEvaluator(cfg, executor=evaluator.executor, cache=evaluator.cache)

    def make_validation_evaluator(self, campaign: Campaign, run_dir: Path, search_evaluator=None):
        """The same protocol on ``validation_tasks`` and fresh seeds (search.rules.tasksets); None without
        them. It runs on the search evaluator's executor (one process pool per run, not two)."""
        plan = bank_plan(campaign)
        d = validation_config_dict(eval_config_dict(campaign, run_dir), campaign, plan)
        if d is None:
            return None
        shared = (search_evaluator.executor if isinstance(search_evaluator, (RuleEvaluator, TaskSetEvaluator))
                  else None)
        cfg = RuleEvalConfig.model_validate(d)
        return RuleEvaluator(cfg, executor=shared) if plan is None else TaskSetEvaluator(cfg, plan.aggregate, shared)

    def noise_floors(self, evaluator, fidelity: str, tasks, replicates: int) -> dict[str, float]:
        """Tuned baseline against itself on ``replicates`` pairs of disjoint seed sets per task, under
        ``evaluator``'s protocol and cache (``evaluators.noise_floors``); {} for another evaluator."""
        owner = evaluator.inner(fidelity) if isinstance(evaluator, TaskSetEvaluator) else evaluator
        if not isinstance(owner, RuleEvaluator) or replicates < 1:
            return {}
        floors = measure_noise_floors(owner, fidelity, list(tasks), replicates=replicates)
        return {t: f.floor for t, f in floors.items()}

    # -- the sampled task bank ([bank]; search.rules.tasksets) ---------------------------------
    def run_plan(self, engine) -> BankPlan | None:
        """The run's bank plan: the one recorded in the run (``meta.bank``), recorded now when absent,
        so a resumed run keeps its validation and test banks. Points the validator at its bank."""
        plan = bank_plan(engine.campaign)
        if plan is None:
            return None
        stored = engine.store.get_meta("bank")
        if stored is None:
            engine.store.set_meta(bank=plan.to_json())
            engine.event("bank", f"task bank: search families {', '.join(plan.search_families) or '-'} "
                         f"({plan.per_generation} fresh tasks per generation); validation bank "
                         f"{', '.join(plan.validation)}; test bank {', '.join(plan.test) or '-'}",
                         **plan.to_json())
        else:
            plan = BankPlan.from_json(stored)
        if isinstance(engine.validator, TaskSetEvaluator):
            engine.validator.set_tasks(validation_tasks(engine.campaign, plan))
        return plan

    def begin_generation(self, engine) -> None:
        """Bank campaigns: train this generation on its own draw (seeded by campaign seed and generation)."""
        plan = self.run_plan(engine)
        if plan is not None and isinstance(engine.evaluator, TaskSetEvaluator):
            engine.evaluator.set_tasks(plan.generation_tasks(engine.generation))

    def end_generation(self, engine) -> None:
        """Bank campaigns: the current best on the validation bank at ``[bank] track_every`` (bank_track)."""
        b = engine.campaign.bank
        if b is not None:
            track_validation(engine, b.track_every, b.track_fidelity, b.overfit_window)

    def finalize(self, engine) -> Any:
        """As every kind's, but in a bank campaign each winner's simplification tries train on the
        tasks of the generation that scored the winner (a score is comparable only on the same tasks)."""
        plan = self.run_plan(engine)
        if plan is None or not isinstance(engine.evaluator, TaskSetEvaluator):
            return super().finalize(engine)
        cfg = engine.campaign.simplify
        out = None
        if cfg.enabled and cfg.top > 0:
            spent, out = [0], []
            for ind in engine.ctx.top(cfg.top):
                if ind.score <= WORST_SCORE or engine.fidelities[ind.level] not in ind.results:
                    continue
                engine.evaluator.set_tasks(plan.generation_tasks(ind.generation))
                out.append(simplify_one(engine, ind, spent))
            engine.event("simplified", f"{len(out)} winner(s) simplified with {spent[0]} evaluation(s) "
                         "(each on its own generation's tasks)")
        engine.validate_winners()
        return out

    def seed_texts(self, campaign: Campaign) -> list[tuple[str, str]]:
        base = Path(campaign.source_path).parent if campaign.source_path else None
        return [rule_text(s, base) for s in campaign.seed_rules]

    def normalize(self, text: str) -> str:
        try:
            prog = dsl.parse(text)
        except dsl.DSLError as e:
            raise InvalidCandidate(str(e)) from None
        lv = liveness(prog)
        if not any(f and s.target == "w" for s, f in zip(prog.body, lv.live)):
            raise InvalidCandidate("the rule never changes w")
        if "g" not in lv.live_in:
            raise InvalidCandidate("the update never reads the gradient g")
        if moves_without_lr(prog):
            raise InvalidCandidate("the rule changes w at lr = 0: part of its step ignores the tuned learning "
                                   "rate, an untuned second step size the baselines do not get (scale every "
                                   "change of w by lr)")
        canon = prog.source()
        if dsl.parse(canon).source() != canon:  # the printer's round trip (a DSL invariant)
            raise InvalidCandidate("canonical source does not round-trip")
        return canon

    def describe(self, text: str) -> dict[str, Any]:
        p = dsl.parse(text)
        return {"size": p.size(), "n_state": len(p.state_names), "n_statements": len(p.body),
                "n_hyper": len(p.hyperparams)}

    def objectives(self, ind: Individual, names: Sequence[str]) -> tuple[float, ...]:
        m = {"score": ind.score, "size": float(ind.meta.get("size", 0)),
             "state": float(ind.meta.get("n_state", 0))}
        return tuple(m[n] for n in names)

    def simplify_exact(self, text: str) -> str:
        return dsl.simplify(dsl.parse(text)).source()

    def ablations(self, text: str, digits: Sequence[int]) -> list[tuple[str, str]]:
        return rule_ablations(text, digits)

    def show_lines(self, view) -> list[str]:
        """``optforge show`` lines for rule runs: the seed rules next to the best, and what to do next."""
        ranked = view.ranked()
        if not ranked:
            return []
        best = ranked[0]
        fid = view.fidelities[best["level"]]
        cells = []
        for x in view.individuals:
            if x["operator"] != "seed":
                continue
            r = x["results"].get(fid)
            cells.append(f"{x['meta'].get('seed', '#' + str(x['id']))} "
                         f"{fmt_score(r.score if r is not None and r.status.value == 'ok' else None)}")
        out = []
        if cells:
            out.append(f"seed rules at {fid}: {', '.join(cells)}; best found {fmt_score(best['score'])} "
                       f"(#{best['id']})")
        how = "interquartile mean" if (view.store.get_meta("bank") or {}).get("aggregate") == "iqm" else "mean"
        out.append(f"scores: {how} over tasks of log(tuned AdamW loss / tuned rule loss); 0 = tuned AdamW, "
                   "+0.1 = about 10% lower loss")
        out += bank_lines(view)
        out.append(f"next: optforge export {view.run_dir} --rank 1 -o best_rule.py  (standalone torch optimizer)")
        out.append(f"      optforge report {view.run_dir}  (HTML: score over evaluations, Pareto front, loss curves)")
        return out

    def export_info(self, view, candidate: dict[str, Any], fidelity: str) -> dict[str, Any]:
        """Where to start tuning: the lr the evaluator picked per task."""
        tasks = candidate["results"][fidelity].tasks if fidelity in candidate["results"] else {}
        if not tasks:
            return {}
        return {"tuned lr per task": ", ".join(f"{t} {tr.best_lr:.3g} (score {tr.score:+.3f})"
                                               for t, tr in tasks.items() if tr.best_lr)}

    def export(self, text: str, out: Path, *, name: str, info: dict[str, Any]) -> None:
        prog = dsl.parse(text)
        src = export_python(prog, name)
        header = "".join(f"# {k}: {v}\n" for k, v in info.items())
        out.write_text(header + src, encoding="utf-8")


register_kind(RuleKind())
