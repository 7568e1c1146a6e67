"""Selecting winners that transfer: the validation stage and the final ranking.

The search screens and promotes on ``search_tasks``; selection on the same tasks overfits them
(a winner tuned to one proxy). So, as the Lion paper's meta-validation did, the funnel ends with
a stage on *other* tasks: after the search, the top ``[validation] top`` candidates by the
search's ranking are simplified (exact, then empirically for ``[simplify] top`` of them) and
the simplified programs are scored on ``validation_tasks``, next to the seed rules (``[validation]
seeds``, default on: a short search whose candidates only overfit the search tasks then ends with
its seed first, not with a candidate that loses to it on validation); the final ranking and the
run's best use those scores. Validation evaluations are recorded with ``phase = 'validation'`` (and
fidelity ``'validation'``) and, like simplification tries, cost no search units.

Final ranking (:func:`final_order`): validated candidates first, by validation score; the rest
by the highest search fidelity reached, then the score there. Scores closer than
``[validation] noise`` count as equal (:func:`noise_order`): then the one that beats the
baseline on more tasks (by more than ``noise`` each) ranks higher, then the smaller program
(Occam), then the higher score.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from evaluators.base import WORST_SCORE, Candidate, EvalResult, Status

from .simplify import exact_simplify
from .types import Individual, InvalidCandidate

if TYPE_CHECKING:
    from .engine import Engine

#: the phase and the fidelity label of validation evaluations in the run store
VALIDATION = "validation"

T = TypeVar("T")


class ValidationConfig(BaseModel):
    """``[validation]``: the funnel's last stage, on ``validation_tasks`` (see module docstring)."""
    model_config = ConfigDict(extra="forbid")

    top: int = Field(6, ge=0)             # candidates validated (top by the search's ranking)
    fidelity: str | None = None           # default: the highest search fidelity
    noise: float = Field(0.02, ge=0)      # score differences below this are ties (tasks won, size decide)
    seeds: bool = True                    # validate the seed rules too: a candidate outranks a seed only
    #                                       by beating it on the validation tasks, not on the search's


class VerifyConfig(BaseModel):
    """``[verify]``: what ``optforge verify RUN`` re-scores (reporting only, never selection)."""
    model_config = ConfigDict(extra="forbid")

    tasks: list[str] | None = None        # transfer tasks; None: the transfer group, minus used families
    seeds: list[int] | None = None        # None: two training seeds the search never used
    top: int = Field(3, ge=1)
    fidelity: str | None = None           # default: the validation (else highest search) fidelity


def noise_order(items: Sequence[T], score: Callable[[T], float], won: Callable[[T], int],
                size: Callable[[T], float], noise: float) -> list[T]:
    """``items`` best first: repeatedly take, among those within ``noise`` of the best score left,
    the one with most tasks won, then the smallest size, then the highest score (then the input
    order). With ``noise = 0`` this is plain best-score-first with those tie-breaks."""
    rest = sorted(items, key=lambda x: -score(x))     # stable: equal scores keep the input order
    out: list[T] = []
    while rest:
        top = score(rest[0])
        band = 0
        while band < len(rest) and score(rest[band]) >= top - noise - 1e-12:
            band += 1
        j = max(range(band), key=lambda k: (won(rest[k]), -size(rest[k]), score(rest[k]), -k))
        out.append(rest.pop(j))
    return out


def _ok_score(r: EvalResult | None) -> float:
    if r is None or r.status != Status.ok or not r.score == r.score:
        return WORST_SCORE
    return float(r.score)


def final_order(items: Sequence[T], *, level: Callable[[T], int], score: Callable[[T], float],
                search_result: Callable[[T], EvalResult | None], validation: Callable[[T], EvalResult | None],
                size: Callable[[T], float], noise: float) -> list[T]:
    """The final ranking (module docstring) of engine individuals or RunView rows alike."""
    validated = [x for x in items if validation(x) is not None]
    out = noise_order(validated, lambda x: _ok_score(validation(x)), lambda x: validation(x).tasks_won_by(noise),
                      size, noise)
    rest = [x for x in items if validation(x) is None]
    for lvl in sorted({level(x) for x in rest}, reverse=True):
        group = [x for x in rest if level(x) == lvl]
        out += noise_order(group, score,
                           lambda x: (r.tasks_won_by(noise) if (r := search_result(x)) is not None else 0),
                           size, noise)
    return out


def rank_individuals(engine: "Engine", items: Sequence["Individual"]) -> list["Individual"]:
    """The engine's individuals in final-ranking order (:func:`final_order`)."""
    fids = engine.fidelities
    return final_order(
        sorted(items, key=lambda i: i.id), level=lambda i: i.level, score=lambda i: i.score,
        search_result=lambda i: i.results.get(fids[i.level]) if i.level >= 0 else None,
        validation=lambda i: i.validation, size=lambda i: float(i.meta.get("size", 0)),
        noise=engine.campaign.validation.noise)


def rank_rows(rows: Sequence[dict], fidelities: Sequence[str], noise: float) -> list[dict]:
    """RunView rows (``level``, ``score``, ``results``, ``validation``, ``meta``) in final order."""
    return final_order(
        sorted(rows, key=lambda c: c["id"]), level=lambda c: c["level"], score=lambda c: c["score"],
        search_result=lambda c: c["results"].get(fidelities[c["level"]]) if c["level"] >= 0 else None,
        validation=lambda c: c.get("validation"), size=lambda c: float(c["meta"].get("size", 0)), noise=noise)


def validated_text(engine: "Engine", ind: "Individual") -> str:
    """What a winner is validated (and exported) as: its empirically simplified text when it has
    one, else its exact simplification (same fingerprint)."""
    simp = ind.meta.get("simplified", {}).get("text")
    return simp or exact_simplify(engine, ind.text)


def validate_winners(engine: "Engine") -> list[dict[str, Any]]:
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
    out = []
    for ind, text, r in zip(winners, texts, results):
        key = ev.key(Candidate(kind=engine.campaign.kind, text=text))
        seq = engine.store.count("evaluations")
        engine.store.add_evaluation(seq=seq, candidate_id=ind.id, key=key, fidelity=VALIDATION,
                                    result_json=r.model_dump_json(), score=float(r.score),
                                    status=str(r.status.value), cost=0.0, seconds=float(r.seconds),
                                    phase=VALIDATION)
        ind.validation = r
        rec = {"text": text, "score": _ok_score(r), "tasks_won": r.tasks_won, "tasks": r.tasks_scored,
               "fidelity": fid, "search_score": ind.score}
        ind.meta["validation"] = rec
        engine.store.update_candidate_meta(ind.id, ind.meta)
        out.append(rec | {"id": ind.id})
    best = rank_individuals(engine, winners)[0]
    engine.event(VALIDATION, f"{len(out)} candidate(s) validated at {fid}; best #{best.id} "
                 f"({_ok_score(best.validation):+.4f}, {best.validation.tasks_won}/"
                 f"{best.validation.tasks_scored} tasks won)", best=best.id)
    return out


__all__ = ["VALIDATION", "ValidationConfig", "VerifyConfig", "noise_order", "final_order", "rank_individuals",
           "rank_rows", "validated_text", "validate_winners"]
