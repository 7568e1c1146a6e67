"""After a prompt search: the top prompts and the initial one scored on the held-out test split,
and the decision whether one of them replaces the initial prompt (search.prompts.select: paired
intervals on dev after a race for more examples; the older sign test stays available)."""
from __future__ import annotations

from typing import Any

from scipy.stats import binomtest

from evaluators.base import Candidate, Status
from proxies.prompts import match
from search.core import EngineView, Individual, RunView

from .options import prompt_options
from .select import race_to_replace


def finalize_prompt_run(engine: EngineView) -> dict[str, Any]:
    """Score the top ``test_top`` prompts (ranked on dev) and the initial prompt on the test split.

    Results go into each candidate's ``meta["test"]`` (accuracy, per-example scores) and into the
    run's ``prompt_final`` meta entry (used by show/report/export); an event records it. Costs no
    search budget. Returns the ``prompt_final`` dict.
    """
    o = prompt_options(engine.campaign)
    ev = engine.evaluator
    top = engine.ctx.top(max(0, o.test_top))
    seeds = [i for i in engine.individuals.values() if i.operator == "seed" and i.meta.get("seed") == "initial"]
    initial = seeds[0] if seeds else None
    chosen = list(top) + ([initial] if initial is not None and initial.id not in {i.id for i in top} else [])
    selection = None
    if top and initial is not None and top[0].id != initial.id and o.select_alpha is not None \
            and o.select_alpha < 0.5:   # before the test split is scored: nothing it shows enters the decision
        selection = race_to_replace(engine, list(top), initial, o.select_alpha)
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
    if selection is not None:
        best = ini_row if selection["kept_initial"] else next(r for r in rows if r["id"] == selection["adopted"])
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
    return 1.0 if n == 0 else float(binomtest(wins, n, 0.5, alternative="greater").pvalue)


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
    if not preds or len(preds) != len(examples):
        return None
    return sum(match(p, ex.targets, "normalized") for p, ex in zip(preds, examples)) / len(examples)


def prompt_final(view: RunView) -> dict[str, Any] | None:
    """The run's ``prompt_final`` record (None before the search finished)."""
    return view.store.get_meta("prompt_final")
