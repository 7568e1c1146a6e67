"""Discovery benchmark: from an SGD-with-momentum warm start, does the search find rules that clearly
beat tuned SGD-momentum, and how close does it get to tuned AdamW? Then the same budget with LLM
operators on the embedded model.

Protocol (a benchmark, not a test; numbers depend on the machine):

1. Search: seed ``sgd_momentum``; tasks ``digits_logreg`` and ``digits_mlp`` (held-out validation
   loss on scikit-learn's digits); funnel tiny -> small; one training seed (0); each rule tuned on
   a 9-point lr grid 1e-4..1 and scored against AdamW tuned on the same grid
   (score = mean log(AdamW loss / rule loss); 0 = as good as tuned AdamW).
2. Held-out check: the simplified best rule, SGD-momentum and AdamW are re-scored on UNSEEN
   training seeds (1, 2) at the ``small`` fidelity, on the two search tasks plus ``char_lm``
   (a task the search never saw), against tuned AdamW.
3. The same search budget with ``llm_share`` of the children proposed by the LLM backend
   (default: the embedded local model); skipped with ``--no-llm`` or when no backend loads.

    python bench/discovery.py                 # ~10-15 min on 2 CPU cores
    python bench/discovery.py --budget 120 --no-llm   # quick look
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEARCH_TASKS = ["digits_logreg", "digits_mlp"]
HELDOUT_TASKS = ["digits_logreg", "digits_mlp", "char_lm"]
HELDOUT_SEEDS = [1, 2]
LR_GRID = {"center": 0.01, "width": 4.0, "points": 9}


def campaign_dict(name: str, budget: int, wall: float, llm_share: float, executor: str,
                  llm_calls: int = 0) -> dict:
    d = {
        "name": name, "kind": "rule", "random_seed": 0, "seed_rules": ["sgd_momentum"],
        "tasks": SEARCH_TASKS, "fidelities": ["tiny", "small"], "eval_seeds": [0], "executor": executor,
        "evaluator": {"lr_grid": LR_GRID},
        "budget": {"evaluations": budget, "wall_seconds": wall},
        "search": {"strategy": "regularized", "population": 24, "tournament": 4, "batch_size": 4,
                   "patience": max(40, budget // 3)},
        "funnel": {"promote_fraction": 0.25},
        "operators": {"llm_share": llm_share},
        "simplify": {"top": 1, "max_evaluations": 16},
    }
    if llm_share > 0:
        d["llm"] = {}
        d["budget"]["llm_calls"] = llm_calls
    return d


def run_search(d: dict, out: Path) -> dict:
    from search.campaign import parse_campaign
    from search.engine import Engine
    from search.live import PlainProgress
    c = parse_campaign(d, f"<bench {d['name']}>")
    t0 = time.time()
    eng = Engine(c, out / d["name"], fresh=True, progress=PlainProgress(every_s=20))
    try:
        s = eng.run()
        view_best = eng.ctx.top(1)[0]
        simplified = view_best.meta.get("simplified", {}).get("text") or view_best.text
        seed = next(i for i in eng.individuals.values() if i.operator == "seed")
        return {"name": d["name"], "wall_s": round(time.time() - t0, 1), "budget_units": s.used,
                "evaluations": s.evaluations, "generations": s.generations, "llm_calls": s.llm_calls,
                "llm_proposals": eng.stats.llm_proposals, "llm_valid": eng.stats.llm_valid,
                "llm_note": eng.llm_disabled_reason, "best_id": view_best.id,
                "best_score_small": view_best.score, "seed_score_small": seed.results.get("small").score
                if "small" in seed.results else None, "best_text": view_best.text, "simplified": simplified,
                "invalid": sum(eng.stats.invalid.values()), "duplicates": eng.stats.duplicates}
    finally:
        eng.close()


def heldout(rules: dict[str, str], executor: str) -> dict:
    """Scores vs tuned AdamW on unseen seeds (and an unseen task), small fidelity."""
    from evaluators.base import Candidate
    from evaluators.rules import RuleEvalConfig, RuleEvaluator
    ev = RuleEvaluator(RuleEvalConfig(tasks=HELDOUT_TASKS, seeds=HELDOUT_SEEDS, lr_grid=LR_GRID,
                                      executor=executor))
    try:
        names = list(rules)
        t0 = time.time()
        res = ev.evaluate([Candidate(text=rules[n]) for n in names], "small")
        out = {}
        for n, r in zip(names, res):
            out[n] = {"score": r.score, "status": r.status.value, "reason": r.reason[:200],
                      "tasks": {t: {"score": tr.score, "metric": tr.metric, "adamw": tr.baseline, "lr": tr.best_lr}
                                for t, tr in r.tasks.items()}}
        out["_seconds"] = round(time.time() - t0, 1)
        return out
    finally:
        ev.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=300, help="evaluation units per campaign")
    ap.add_argument("--wall", type=float, default=330.0, help="wall-time cap per campaign (s)")
    ap.add_argument("--llm-share", type=float, default=0.25)
    ap.add_argument("--llm-calls", type=int, default=16, help="LLM call cap of the LLM campaign (then random ops)")
    ap.add_argument("--llm-wall", type=float, default=540.0, help="wall-time cap of the LLM campaign (s)")
    ap.add_argument("--no-llm", action="store_true")
    ap.add_argument("--executor", default="pool", choices=["pool", "inprocess"])
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_discovery"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import dsl
    results: dict = {"machine": "see README (report the machine with the numbers)", "budget": args.budget,
                     "wall_cap_s": args.wall, "search_tasks": SEARCH_TASKS, "heldout_tasks": HELDOUT_TASKS,
                     "heldout_seeds": HELDOUT_SEEDS, "campaigns": []}
    plans = [("sgdm_random", 0.0)] + ([] if args.no_llm else [("sgdm_llm", args.llm_share)])
    rules = {"sgd_momentum": dsl.get_rule("sgd_momentum").source(), "adamw": dsl.get_rule("adamw").source()}
    for name, share in plans:
        print(f"\n=== campaign {name} (llm_share {share}) ===", flush=True)
        try:
            wall = args.wall if share == 0 else args.llm_wall
            r = run_search(campaign_dict(f"bench_{name}", args.budget, wall, share, args.executor,
                                         args.llm_calls), out)
        except Exception as e:  # noqa: BLE001 - report and go on with the next one
            print(f"campaign {name} failed: {type(e).__name__}: {e}", flush=True)
            continue
        results["campaigns"].append(r)
        rules[f"best_{name}"] = r["simplified"]
        print(f"best (simplified) of {name}:\n{r['simplified']}", flush=True)
    print("\n=== held-out check (unseen seeds, + unseen task char_lm), small fidelity ===", flush=True)
    results["heldout"] = heldout(rules, args.executor)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))

    print("\nsearch (seed 0, tasks " + ", ".join(SEARCH_TASKS) + "):")
    print(f"{'campaign':<14}{'units':>7}{'wall s':>8}{'LLM calls':>10}{'LLM valid':>11}"
          f"{'SGD-m score':>13}{'best score':>12}")
    for r in results["campaigns"]:
        lv = f"{r['llm_valid']}/{r['llm_proposals']}" if r["llm_proposals"] else "-"
        print(f"{r['name'][6:]:<14}{r['budget_units']:>7g}{r['wall_s']:>8.0f}{r['llm_calls']:>10}{lv:>11}"
              f"{(r['seed_score_small'] or float('nan')):>13.3f}{r['best_score_small']:>12.3f}")
    h = results["heldout"]
    print(f"\nheld-out (seeds {HELDOUT_SEEDS}; score vs tuned AdamW = 0; higher is better), {h['_seconds']} s:")
    print(f"{'rule':<22}" + "".join(f"{t:>15}" for t in HELDOUT_TASKS) + f"{'mean':>10}")
    for n, v in h.items():
        if n.startswith("_"):
            continue
        cells = "".join(f"{v['tasks'][t]['score']:>15.3f}" if t in v["tasks"] and v["tasks"][t]["score"] > -1e8
                        else f"{'failed':>15}" for t in HELDOUT_TASKS)
        print(f"{n:<22}{cells}{v['score']:>10.3f}" + ("" if v["status"] == "ok" else f"  ({v['reason'][:60]})"))
    print(f"\nresults: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
