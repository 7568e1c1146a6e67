"""Prompt optimization benchmark: EvoPrompt GA, EvoPrompt DE and OPRO at the same LLM-call budget.

On generated instruction-induction tasks, with the embedded model (SmolLM2-135M-Instruct) as
both the task model and the optimizer (proposer), each algorithm runs as a prompt campaign on
the engine (minibatch screening -> dev selection) with the same cap on proposer calls and the
same evaluation budget; then the best prompt by dev accuracy and the task's plain initial
prompt are scored on the held-out test split. Printed: a table per task and algorithm (test
accuracy initial -> best, proposer calls, task-model requests, valid-proposal rate, wall
time); written: results.json and progress.png (best dev accuracy over proposer calls).

    python bench/prompt_opt.py                       # 4 tasks x GA/DE/OPRO, small budget
    python bench/prompt_opt.py --llm-calls 12 --dev 20 --test 40 --algorithms ga de opro rewrite

Generation tasks are scored with the ``contains`` metric by default (the 135M model answers in
sentences: "The plural form of the word is cats."); ``--metric normalized`` is the strict
instruction-induction match. ``sentiment`` is scored by label log-probabilities.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluators.prompts import PromptEvaluator  # noqa: E402
from search.campaign import parse_campaign  # noqa: E402
from search.engine import Engine  # noqa: E402
from search.llm import make_llm  # noqa: E402
from search.prompt_campaign import build_task  # noqa: E402
from search.store import RunView  # noqa: E402


def one_run(task_name: str, alg: str, args, task_llm, out: Path) -> dict:
    run_dir = out / f"{task_name}-{alg}"
    shutil.rmtree(run_dir, ignore_errors=True)
    prompt = {"task": task_name, "algorithm": alg, "sizes": {"train": 6, "dev": args.dev, "test": args.test},
              "minibatch": args.minibatch, "max_tokens": args.max_tokens, "test_top": 1,
              "proposer_max_tokens": args.proposer_tokens}
    if task_name != "sentiment" and args.metric != "task":
        prompt["metric"] = args.metric
    c = parse_campaign({
        "name": f"bench-{task_name}-{alg}", "kind": "prompt", "random_seed": args.seed, "prompt": prompt,
        "llm": {"backend": "local"},
        "search": {"population": args.population, "batch_size": args.batch},
        "funnel": {"promote_fraction": 0.5},
        "budget": {"evaluations": args.llm_calls + 2, "llm_calls": args.llm_calls,
                   "fidelity_cost": {"minibatch": 1.0, "dev": 0.001}}})
    o = c.options
    task = build_task(o)
    ev = PromptEvaluator(task, task_llm, llm_id="local-default", minibatch_size=o.minibatch,
                         max_prompt_chars=o.max_prompt_chars, metric=o.metric, max_tokens=o.max_tokens)
    proposer = make_llm({"backend": "local"}, cache_dir=run_dir / "llm_cache")
    t0 = time.perf_counter()
    eng = Engine(c, run_dir, fresh=True, evaluator=ev, llm=proposer)
    try:
        summary = eng.run()
        final = eng.store.get_meta("prompt_final")
    finally:
        eng.close()
    wall = time.perf_counter() - t0
    view = RunView(run_dir)
    try:
        # best dev accuracy after each proposer call (candidates in creation order)
        calls = sorted((r["id"], r["candidate_id"]) for r in view.store.llm_calls())
        curve, best = [], float("-inf")
        by_id = {x["id"]: x for x in view.individuals}
        for cid in sorted(by_id):
            r = by_id[cid]["results"].get("dev")
            if r is not None and r.ok:
                best = max(best, r.score)
            n_calls = sum(1 for _, c_id in calls if c_id <= cid)
            curve.append((n_calls, best if best > float("-inf") else None))
    finally:
        view.close()
    st = summary.stats
    return {"task": task_name, "algorithm": alg, "metric": final["metric"],
            "initial_test": final["initial"]["test"] if final.get("initial") else None,
            "best_test": final["best"]["test"] if final.get("best") else None,
            "best_dev": final["best"]["dev"] if final.get("best") else None,
            "initial_prompt": final["initial"]["text"] if final.get("initial") else None,
            "best_prompt": final["best"]["text"] if final.get("best") else None,
            "best_operator": final["best"]["operator"] if final.get("best") else None,
            "proposer_calls": summary.llm_calls, "task_requests": ev.requests,
            "llm_valid": st.get("llm_valid", 0), "llm_proposals": st.get("llm_proposals", 0),
            "evaluations": summary.evaluations, "wall_s": wall, "curve": curve}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["plural", "antonyms", "first_letter", "sentiment"])
    ap.add_argument("--algorithms", nargs="+", default=["ga", "de", "opro"])
    ap.add_argument("--llm-calls", type=int, default=6, help="proposer calls per run (the shared budget)")
    ap.add_argument("--dev", type=int, default=12)
    ap.add_argument("--test", type=int, default=24)
    ap.add_argument("--minibatch", type=int, default=6)
    ap.add_argument("--population", type=int, default=3)
    ap.add_argument("--batch", type=int, default=3, help="children per generation")
    ap.add_argument("--max-tokens", type=int, default=10, help="task-model reply limit")
    ap.add_argument("--proposer-tokens", type=int, default=40)
    ap.add_argument("--metric", default="contains", choices=["contains", "normalized", "exact", "task"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench_prompt")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task_llm = make_llm({"backend": "local"}, cache_dir=out / "task_cache")  # shared: initial prompts cost once
    t_all = time.perf_counter()
    rows = []
    for t in args.tasks:
        for a in args.algorithms:
            r = one_run(t, a, args, task_llm, out)
            rows.append(r)
            print(f"[{time.perf_counter() - t_all:6.0f}s] {t:<13} {a:<8} test {r['initial_test']} -> "
                  f"{r['best_test']}  calls {r['proposer_calls']}  {r['wall_s']:.0f}s  best: {r['best_prompt']!r}",
                  flush=True)
            (out / "results.json").write_text(json.dumps(rows, indent=1))
    total = time.perf_counter() - t_all
    pct = (lambda v: "  n/a" if v is None else f"{100 * v:5.1f}")
    print(f"\nSmolLM2-135M-Instruct as task model and proposer; dev {args.dev}, test {args.test}, minibatch "
          f"{args.minibatch}, population {args.population}, {args.llm_calls} proposer calls per run; "
          f"total {total:.0f} s\n")
    print("| task | metric | algorithm | initial test % | best test % | best dev % | proposer calls (valid) "
          "| task-model requests | wall s | best prompt |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['metric']} | {r['algorithm']} | {pct(r['initial_test'])} | {pct(r['best_test'])} | "
              f"{pct(r['best_dev'])} | {r['proposer_calls']} ({r['llm_valid']}/{r['llm_proposals']}) | "
              f"{r['task_requests']} | {r['wall_s']:.0f} | {r['best_prompt']} |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(args.tasks), figsize=(4 * len(args.tasks), 3.2), squeeze=False)
        for ax, t in zip(axes[0], args.tasks):
            for r in rows:
                if r["task"] == t and r["curve"]:
                    xs = [c for c, _ in r["curve"]]
                    ys = [None if b is None else 100 * b for _, b in r["curve"]]
                    ax.step(xs, ys, where="post", label=r["algorithm"])
            ax.set_title(t)
            ax.set_xlabel("proposer calls")
            ax.set_ylabel("best dev accuracy (%)")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "progress.png", dpi=90)
        print(f"\nwrote {out / 'results.json'} and {out / 'progress.png'}")
    except Exception as e:  # noqa: BLE001 - the table is the result
        print(f"(no plot: {e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
