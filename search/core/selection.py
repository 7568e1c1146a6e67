"""Selecting winners that transfer: the validation stage.

The search screens and promotes on ``search_tasks``; selection on the same tasks overfits them
(a winner tuned to one proxy). So, as the Lion paper's meta-validation did, the funnel ends with
a stage on *other* tasks: after the search, the top ``[validation] top`` candidates by the
search's ranking are simplified (exact, then empirically for ``[simplify] top`` of them) and
the simplified programs are scored on ``validation_tasks``, next to the seed rules (``[validation]
seeds``, default on: a short search whose candidates only overfit the search tasks then ends with
its seed first, not with a candidate that loses to it on validation).

The winner's curse: the best of many noisy search scores is biased upwards (it was chosen
*because* its noise was favourable). So the stage re-estimates each candidate on training seeds
the search never used (``[validation] eval_seeds``, default fresh ones: ``ValidationConfig.
fresh_seeds``), and the final ranking and the run's best use only these fresh estimates, never
the search's own scores, whenever the stage ran. Each candidate's ``meta.validation`` record
keeps the fresh score, its interval (``evaluators.estimate`` over the per-seed paired log ratios
against each validation task's noise floor, ``[validation] noise_replicates`` pairs of the baseline
against itself: ``estimate``, the ``Estimate.to_json()`` dict; None when the evaluator reports no
paired seeds), the floors (``noise``) and the search score it replaced. Validation evaluations are
recorded with ``phase = 'validation'`` (and fidelity ``'validation'``), run on the search evaluator's
workers, and cost no search units.
The ordering itself is pure and lives in ``search.core.ranking``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evaluators import Estimate, StatsError, describe, estimate_results
from evaluators.base import WORST_SCORE, Candidate, EvalResult, Status

from .plugins import EngineView
from .ranking import VALIDATION, final_order, ok_score
from .simplify import exact_simplify
from .types import Individual, InvalidCandidate


def rank_individuals(engine: EngineView, items: Sequence[Individual]) -> list[Individual]:
    """The engine's individuals in final-ranking order (:func:`final_order`)."""
    fids = engine.fidelities
    return final_order(
        sorted(items, key=lambda i: i.id), level=lambda i: i.level, score=lambda i: i.score,
        search_result=lambda i: i.results.get(fids[i.level]) if i.level >= 0 else None,
        validation=lambda i: i.validation, size=lambda i: float(i.meta.get("size", 0)),
        noise=engine.campaign.validation.noise)


def validated_text(engine: EngineView, ind: Individual) -> str:
    """What a winner is validated (and exported) as: its empirically simplified text when it has
    one, else its exact simplification (same fingerprint)."""
    simp = ind.meta.get("simplified", {}).get("text")
    return simp or exact_simplify(engine, ind.text)


def fresh_estimate(ev: object, r: EvalResult, noise: dict[str, float] | None = None) -> dict[str, Any] | None:
    """``evaluators.estimate`` of a validation result's ok tasks (per-seed paired log ratios, clipped
    as the evaluator clips task scores, aggregated over tasks as it aggregates them: the interquartile
    mean on a task bank) against the tasks' ``noise`` floors, as its ``to_json()`` dict; None without
    paired seeds."""
    tasks = {t: tr for t, tr in r.tasks.items() if tr.status == Status.ok}
    if r.status != Status.ok or not tasks:
        return None
    clip = getattr(getattr(ev, "config", None), "clip", None)   # RuleEvalConfig.clip; other kinds: none
    aggregate = getattr(ev, "aggregate", "mean")                  # a bank's TaskSetEvaluator: "iqm"
    try:
        return estimate_results(tasks, noise, clip=clip, aggregate=aggregate).to_json()
    except StatsError:
        return None


def stage_noise_floors(engine: EngineView, fidelity: str, results: Sequence[EvalResult]) -> dict[str, float]:
    """The validation tasks' noise floors (``[validation] noise_replicates`` pairs; KindPlugin.noise_floors);
    {} when off, unsupported, or failed (an event says so, and the verdicts use each task's interval)."""
    k = engine.campaign.validation.noise_replicates
    tasks = list(dict.fromkeys(t for r in results for t, tr in r.tasks.items() if tr.status == Status.ok))
    if k < 1 or not tasks:
        return {}
    try:
        return engine.kind.noise_floors(engine.validator, fidelity, tasks, k)
    except Exception as e:  # noqa: BLE001 - floors refine the verdict; without them the stage still ends
        engine.event("evaluator_error", f"validation noise floors: {type(e).__name__}: {e}; the verdicts use "
                     "each task's own interval")
        return {}


def validate_winners(engine: EngineView) -> list[dict[str, Any]]:
    """Score the simplified top candidates on the validation tasks (no-op without a validation
    evaluator); sets ``Individual.validation`` and the candidate's ``meta.validation``."""
    ev = engine.validator
    cfg = engine.campaign.validation
    if ev is None or cfg.top <= 0:
        return []
    fid = cfg.fidelity or engine.fidelities[-1]
    winners = [i for i in engine.ctx.top(cfg.top) if i.score > WORST_SCORE]
    if cfg.seeds:
        chosen = {i.id for i in winners}
        winners += [i for _, i in sorted(engine.ctx.history.items())
                    if i.operator == "seed" and i.id not in chosen and i.score > WORST_SCORE]
    if not winners:
        return []
    texts = []
    for ind in winners:
        try:
            texts.append(engine.kind.normalize(validated_text(engine, ind)))
        except InvalidCandidate:
            texts.append(ind.text)
    cands = [Candidate(kind=engine.campaign.kind, text=t, meta={"id": i.id}) for t, i in zip(texts, winners)]
    try:
        results = ev.evaluate(cands, fid)
    except Exception as e:  # noqa: BLE001 - an evaluator must not raise; the run still ends
        engine.event("evaluator_error", f"validation: {type(e).__name__}: {e}")
        return []
    floors = stage_noise_floors(engine, fid, results)
    out = []
    for ind, text, r in zip(winners, texts, results):
        key = ev.key(Candidate(kind=engine.campaign.kind, text=text))
        engine.store.add_result(ind.id, key, r, fidelity=VALIDATION, cost=0.0, phase=VALIDATION)
        ind.validation = r
        rec = {"text": text, "score": ok_score(r), "tasks_won": r.tasks_won, "tasks": r.tasks_scored,
               "fidelity": fid, "search_score": ind.score, "estimate": fresh_estimate(ev, r, floors),
               "noise": floors}
        ind.meta["validation"] = rec
        engine.store.update_candidate_meta(ind.id, ind.meta)
        out.append(rec | {"id": ind.id})
    best = rank_individuals(engine, winners)[0]
    est = best.meta["validation"].get("estimate")
    engine.event(VALIDATION, f"{len(out)} candidate(s) validated at {fid} on fresh seeds; best #{best.id} "
                 f"({ok_score(best.validation):+.4f}, {best.validation.tasks_won}/"
                 f"{best.validation.tasks_scored} tasks won" + (f"; {describe(Estimate.from_json(est))}" if est else "")
                 + ")", best=best.id)
    return out


__all__ = ["rank_individuals", "validated_text", "validate_winners", "fresh_estimate", "stage_noise_floors"]
