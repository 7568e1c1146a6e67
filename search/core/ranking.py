"""The final ranking: validated candidates first, then the search's best, noise-aware ties.

Pure functions over any items (engine individuals or RunView rows), the ``[validation]`` /
``[verify]`` settings, and a score as shown (:func:`fmt_score`, :func:`fmt_won`: CLI, report, rules).
``search.core.selection`` runs the validation stage that fills in the scores this ranks by; the
campaign model and the run store use these without the engine.

Final ranking (:func:`final_order`): validated candidates first, by validation score; the rest
by the highest search fidelity reached, then the score there. Scores closer than
``[validation] noise`` count as equal (:func:`noise_order`): then the one with more net wins
against the baseline (tasks won by more than ``noise`` minus tasks lost by more than it) ranks
higher, then the smaller program (Occam), then the higher score. Net wins, not wins alone: on a
task bank whose interquartile mean ties most candidates, counting wins only let a seed that won
one task and lost another by 0.05 outrank one that won a task and lost none, on program size.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from evaluators.base import WORST_SCORE, EvalResult, Status

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
    # training seeds of the stage; None: fresh ones the search never used (:meth:`fresh_seeds`)
    eval_seeds: list[int] | None = None
    # noise floors of the stage's verdicts: the baseline against itself on K pairs of disjoint seed sets
    # per validation task (KindPlugin.noise_floors; 0: none, a task then counts as won when its own
    # interval is above 0)
    noise_replicates: int = Field(1, ge=0)

    def fresh_seeds(self, search_seeds: Sequence[int]) -> list[int]:
        """The validation stage's training seeds: ``eval_seeds``, or as many as the search uses (at least
        2) starting 100 above the search's highest, so that neither the search's seeds nor the ones
        ``optforge verify`` takes by default (the next after the search's) are reused. Selecting on
        the seeds that produced a candidate's search score would carry its luck (the winner's curse)
        into the final ranking. ValueError when ``eval_seeds`` shares a seed with the search."""
        used = sorted({int(s) for s in search_seeds})
        if self.eval_seeds is not None:
            if not self.eval_seeds or len(set(self.eval_seeds)) != len(self.eval_seeds):
                raise ValueError(f"validation.eval_seeds: give distinct seeds, got {self.eval_seeds}")
            shared = sorted(set(self.eval_seeds) & set(used))
            if shared:
                raise ValueError(f"validation.eval_seeds: {shared} also train the search (seeds {used}); the "
                                 "validation stage must use seeds the search never saw. Pick others, or "
                                 "remove the field for fresh ones")
            return list(self.eval_seeds)
        start = (max(used) if used else 0) + 100
        return list(range(start, start + max(2, len(used))))


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
    the one with the highest ``won`` (final_order: net wins), then the smallest size, then the
    highest score (then the input order). With ``noise = 0`` this is plain best-score-first."""
    # (score, won, size, item), each computed once; stable sort: equal scores keep the input order
    rest = sorted(((score(x), won(x), size(x), x) for x in items), key=lambda t: -t[0])
    out: list[T] = []
    while rest:
        top = rest[0][0]
        band = 0
        while band < len(rest) and rest[band][0] >= top - noise - 1e-12:
            band += 1
        j = max(range(band), key=lambda k: (rest[k][1], -rest[k][2], rest[k][0], -k))
        out.append(rest.pop(j)[3])
    return out


def ok_score(r: EvalResult | None) -> float:
    if r is None or r.status != Status.ok or not r.score == r.score:
        return WORST_SCORE
    return float(r.score)


def fmt_score(s: float | None, none: str = "failed") -> str:
    """A score as shown (``+0.1234``): ``failed`` at ``WORST_SCORE`` (or below), ``none`` for no score."""
    if s is None:
        return none
    return "failed" if s <= WORST_SCORE else f"{s:+.4f}"


def fmt_won(entry: dict, key: str) -> str:
    """A verification entry's tasks won, ``<key>_won/<key>_n`` (``-`` when it has no such tasks)."""
    n = entry.get(key + "_n")
    return f"{entry.get(key + '_won')}/{n}" if n else "-"


def final_order(items: Sequence[T], *, level: Callable[[T], int], score: Callable[[T], float],
                search_result: Callable[[T], EvalResult | None], validation: Callable[[T], EvalResult | None],
                size: Callable[[T], float], noise: float) -> list[T]:
    """The final ranking (module docstring) of engine individuals or RunView rows alike."""
    validated = [x for x in items if validation(x) is not None]
    out = noise_order(validated, lambda x: ok_score(validation(x)), lambda x: validation(x).net_wins_by(noise),
                      size, noise)
    rest = [x for x in items if validation(x) is None]
    for lvl in sorted({level(x) for x in rest}, reverse=True):
        group = [x for x in rest if level(x) == lvl]
        out += noise_order(group, score,
                           lambda x: (r.net_wins_by(noise) if (r := search_result(x)) is not None else 0),
                           size, noise)
    return out


def rank_rows(rows: Sequence[dict], fidelities: Sequence[str], noise: float) -> list[dict]:
    """RunView rows (``level``, ``score``, ``results``, ``validation``, ``meta``) in final order."""
    return final_order(
        sorted(rows, key=lambda c: c["id"]), level=lambda c: c["level"], score=lambda c: c["score"],
        search_result=lambda c: c["results"].get(fidelities[c["level"]]) if c["level"] >= 0 else None,
        validation=lambda c: c.get("validation"), size=lambda c: float(c["meta"].get("size", 0)), noise=noise)



__all__ = ["VALIDATION", "ValidationConfig", "VerifyConfig", "noise_order", "ok_score", "fmt_score", "fmt_won",
           "final_order", "rank_rows"]
