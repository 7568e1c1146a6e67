"""Empirical simplification of winners (the Lion paper's procedure, Chen et al. 2023, sec. 2).

After the exact simplification of the DSL (dead code, constant folding, identities), try
simplifications that *change* the function and keep those that cost (almost) nothing:

1. remove one statement (later reads then see the previous value of the name);
2. bypass one function call (``clip(x, c)`` -> ``x``, ``sign(u)`` -> ``u``);
3. drop one term of a sum or difference (``u + 6e-05 * w`` -> ``u``, ``x - 0.001`` -> ``x``) and
   one constant factor (``x * 0.98`` -> ``x``, ``g / 0.0122`` -> ``g``): search leaves such
   small corrections behind, and they rarely matter;
4. round one constant (a literal or a hyperparameter default) to fewer significant digits,
   fewest first.

Each try is evaluated at the winner's (highest) fidelity and accepted when its score is at
least ``original_score - simplify.tolerance``. The reference is the original winner's score,
so accepted drops cannot accumulate beyond the tolerance. After an acceptance the exact
simplifier runs again and the list of tries is rebuilt. Evaluations are capped by
``simplify.max_evaluations`` and recorded with ``phase = 'simplify'`` (they cost no search
budget); tried programs are stored as candidates with ``operator = 'simplify'``, and the
winner's candidate row gets ``meta.simplified`` (text, score, steps).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from evaluators.base import WORST_SCORE, Candidate, Status

if TYPE_CHECKING:
    from .engine import Engine, Individual


def _round_sig(v: float, d: int) -> float:
    if v == 0 or not math.isfinite(v):
        return v
    return float(f"{v:.{d}g}")


def rule_ablations(text: str, digits: Sequence[int]) -> list[tuple[str, str]]:
    """(description, program text) of every simplification to try, cheapest-looking first."""
    import dsl
    from dsl.program import Arg, BinOp, Call, Num, format_expr

    from .mutations import _all_nodes, _set_node  # tree helpers shared with the mutation operators

    prog = dsl.parse(text)
    out: list[tuple[str, str]] = []
    seen = {prog.source()}

    def add(desc: str, p) -> None:
        try:
            src = dsl.parse(p.source()).source()
        except dsl.DSLError:
            return
        if src not in seen:
            seen.add(src)
            out.append((desc, src))

    for i in range(len(prog.body) - 1, -1, -1):
        st = prog.body[i]
        add(f"remove '{st.target} = {format_expr(st.value)}'", prog.replace(body=prog.body[:i] + prog.body[i + 1:]))
    for i, path, nd in _all_nodes(prog):
        if isinstance(nd, Call) and nd.args:
            add(f"bypass {nd.fn}() in '{prog.body[i].target} = ...'", _set_node(prog, i, path, nd.args[0]))
    for i, path, nd in _all_nodes(prog):
        if isinstance(nd, BinOp) and nd.op in ("+", "-"):
            add(f"drop term '{format_expr(nd.right)}' in '{prog.body[i].target} = ...'",
                _set_node(prog, i, path, nd.left))
            if nd.op == "+":
                add(f"drop term '{format_expr(nd.left)}' in '{prog.body[i].target} = ...'",
                    _set_node(prog, i, path, nd.right))
        elif isinstance(nd, BinOp) and nd.op in ("*", "/") and isinstance(nd.right, Num):
            add(f"drop factor '{nd.op} {format_expr(nd.right)}' in '{prog.body[i].target} = ...'",
                _set_node(prog, i, path, nd.left))
        elif isinstance(nd, BinOp) and nd.op == "*" and isinstance(nd.left, Num):
            add(f"drop factor '{format_expr(nd.left)} *' in '{prog.body[i].target} = ...'",
                _set_node(prog, i, path, nd.right))
    for d in sorted(digits):
        for i, path, nd in _all_nodes(prog):
            if isinstance(nd, Num):
                v = _round_sig(nd.value, d)
                if v != nd.value:
                    add(f"round {nd.value!r} -> {v!r}", _set_node(prog, i, path, Num(v)))
        for k, a in enumerate(prog.args):
            if a.default is not None:
                v = _round_sig(a.default, d)
                if v != a.default:
                    args = list(prog.args)
                    args[k] = Arg(a.name, v)
                    add(f"round {a.name}={a.default!r} -> {v!r}", prog.replace(args=tuple(args)))
    return out


def _score_text(engine: "Engine", text: str, parent: "Individual", fidelity: str,
                spent: list[int], desc: str) -> "Individual | None":
    """Evaluate ``text`` at ``fidelity`` (reusing any known result); None if invalid/over cap."""
    from .engine import InvalidCandidate, Proposal
    try:
        canon = engine.kind.normalize(text)
    except InvalidCandidate:
        return None
    key = engine.evaluator.key(Candidate(kind=engine.campaign.kind, text=canon))
    known = engine.known.get(key, {})
    if fidelity not in known and spent[0] >= engine.campaign.simplify.max_evaluations:
        return None
    ind = engine._make_individual(canon, key, Proposal(canon, "simplify", (parent.id,), meta={"step": desc}),
                                  state="simplify")
    trained_before = engine.store.count("evaluations")
    replay_before = len(engine.replay)
    engine._evaluate([ind], fidelity, phase="simplify")
    if engine.store.count("evaluations") > trained_before or len(engine.replay) < replay_before:
        spent[0] += 1
    return ind if fidelity in ind.results else None


def exact_simplify(engine: "Engine", text: str) -> str:
    """The kind's exact simplification, kept only when the key (fingerprint) is unchanged."""
    from .engine import InvalidCandidate
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


def simplify_one(engine: "Engine", winner: "Individual", spent: list[int]) -> dict:
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


def simplify_winners(engine: "Engine") -> list[dict]:
    """Simplify the top ``simplify.top`` individuals of a finished search."""
    spent = [0]
    out = []
    for ind in engine.ctx.top(engine.campaign.simplify.top):
        if ind.score <= WORST_SCORE or engine.fidelities[ind.level] not in ind.results:
            continue
        out.append(simplify_one(engine, ind, spent))
    engine.event("simplified", f"{len(out)} winner(s) simplified with {spent[0]} evaluation(s)")
    return out
