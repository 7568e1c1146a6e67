"""Empirical simplification of winners (the Lion paper's procedure, Chen et al. 2023, sec. 2).

After the kind's exact simplification (rules: dead code, constant folding, identities), try
simplifications that *change* the function (``KindPlugin.ablations``; for rules listed by
search.rules.ablations) and keep those that cost (almost) nothing.

Each try is evaluated at the winner's (highest) fidelity and accepted when its score is at
least ``original_score - simplify.tolerance``. The reference is the original winner's score,
so accepted drops cannot accumulate beyond the tolerance. After an acceptance the exact
simplifier runs again and the list of tries is rebuilt. Evaluations are capped by
``simplify.max_evaluations`` and recorded with ``phase = 'simplify'`` (they cost no search
budget); tried programs are stored as candidates with ``operator = 'simplify'``, and the
winner's candidate row gets ``meta.simplified`` (text, score, steps).
"""
from __future__ import annotations

from evaluators.base import WORST_SCORE, Candidate, Status

from .plugins import EngineView
from .types import Individual, InvalidCandidate


def _score_text(engine: EngineView, text: str, parent: Individual, fidelity: str,
                spent: list[int], desc: str) -> Individual | None:
    """Evaluate ``text`` at ``fidelity`` (reusing any known result); None if invalid/over cap."""
    try:
        canon = engine.kind.normalize(text)
    except InvalidCandidate:
        return None
    key = engine.evaluator.key(Candidate(kind=engine.campaign.kind, text=canon))
    known = engine.known.get(key, {})
    if fidelity not in known and spent[0] >= engine.campaign.simplify.max_evaluations:
        return None
    trained_before = engine.store.count("evaluations")
    replay_before = len(engine.replay)
    ind = engine.score_variant(canon, key, parent, fidelity, desc)
    if engine.store.count("evaluations") > trained_before or len(engine.replay) < replay_before:
        spent[0] += 1
    return ind if fidelity in ind.results else None


def exact_simplify(engine: EngineView, text: str) -> str:
    """The kind's exact simplification, kept only when the key (fingerprint) is unchanged."""
    ex = engine.kind.simplify_exact(text)
    if ex == text:
        return text
    try:
        canon = engine.kind.normalize(ex)
    except InvalidCandidate as e:
        engine.event("simplify_warning", f"exact simplification gave an invalid program ({e}); kept the original")
        return text
    k0 = engine.evaluator.key(Candidate(kind=engine.campaign.kind, text=text))
    k1 = engine.evaluator.key(Candidate(kind=engine.campaign.kind, text=canon))
    if k0 != k1:
        engine.event("simplify_warning", "exact simplification changed the function's fingerprint; kept the "
                                         "original", before=text, after=canon)
        return text
    return canon


def simplify_one(engine: EngineView, winner: Individual, spent: list[int]) -> dict:
    """Simplify one winner; returns the record stored in its ``meta.simplified``."""
    cfg = engine.campaign.simplify
    kind = engine.kind
    fidelity = engine.fidelities[winner.level]
    ref = winner.results[fidelity].score
    steps: list[dict] = []
    cur_text, cur_score = exact_simplify(engine, winner.text), ref
    if cur_text != winner.text:
        steps.append({"step": "exact simplification (same fingerprint)", "score": ref})
    changed = True
    while changed and spent[0] < cfg.max_evaluations:
        changed = False
        for desc, cand in kind.ablations(cur_text, cfg.digits):
            ind = _score_text(engine, cand, winner, fidelity, spent, desc)
            if ind is None:
                if spent[0] >= cfg.max_evaluations:
                    break
                continue
            r = ind.results[fidelity]
            if r.status == Status.ok and r.score >= ref - cfg.tolerance:
                cur_text = exact_simplify(engine, ind.text)
                cur_score = r.score
                steps.append({"step": desc, "score": cur_score, "id": ind.id})
                engine.event("simplify", f"#{winner.id}: {desc} (score {r.score:.4f} vs {ref:.4f})",
                             winner=winner.id, candidate=ind.id)
                changed = True
                break
    record = {"text": cur_text, "score": cur_score, "reference_score": ref, "fidelity": fidelity,
              "steps": steps, "evaluations": spent[0], "tolerance": cfg.tolerance}
    winner.meta["simplified"] = record
    engine.store.update_candidate_meta(winner.id, winner.meta)
    return record


def simplify_winners(engine: EngineView) -> list[dict]:
    """Simplify the top ``simplify.top`` individuals of a finished search."""
    spent = [0]
    out = []
    for ind in engine.ctx.top(engine.campaign.simplify.top):
        if ind.score <= WORST_SCORE or engine.fidelities[ind.level] not in ind.results:
            continue
        out.append(simplify_one(engine, ind, spent))
    engine.event("simplified", f"{len(out)} winner(s) simplified with {spent[0]} evaluation(s)")
    return out
