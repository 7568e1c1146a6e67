"""Prompt optimization benchmark: EvoPrompt GA, EvoPrompt DE and OPRO at the same LLM-call budget.

On generated instruction-induction tasks, with the embedded model (SmolLM2-135M-Instruct) as
both the task model and the optimizer (proposer), each algorithm runs as a prompt campaign on
the engine (minibatch screening -> dev selection) with the same cap on proposer calls and the
same evaluation budget; then the best prompt by dev accuracy and the task's plain initial
prompt are scored on the held-out test split (the run's selected prompt is the top one by dev
only when it beats the initial prompt by a sign test on the dev examples; both are printed).
Printed: a table per task and algorithm (test
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
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluators.prompts import PromptEvaluator
from search.core import (
    Engine,
    RunView,
    parse_campaign,
)
from search.llm import make_llm
from search.prompts import (
    build_task,
    markdown_table,
    plot_curves,
    run_row,
)


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
        row = run_row(view)
    finally:
        view.close()
    st = summary.stats
    row.update(wall_s=wall, evaluations=summary.evaluations, llm_valid=st.get("llm_valid", 0),
               llm_proposals=st.get("llm_proposals", 0), task_requests=ev.requests,
               initial_test_normalized=(final.get("initial") or {}).get("test_normalized"),
               best_test_normalized=(final.get("best") or {}).get("test_normalized"))
    top, sel = final.get("top_by_dev") or {}, final.get("selection") or {}
    row.update(top_dev=top.get("dev"), top_test=top.get("test"), top_is_initial=bool(top.get("initial")),
               initial_dev=(final.get("initial") or {}).get("dev"), kept_initial=bool(sel.get("kept_initial")),
               sign=(sel.get("wins"), sel.get("losses"), sel.get("p")) if sel.get("p") is not None else None)
    return row


def selection_table(rows: list[dict]) -> str:
    """Best-by-dev (as EvoPrompt and OPRO select) next to the sign-test selection (the default)."""
    pct = (lambda v: "n/a" if v is None else f"{100 * v:.1f}")
    out = ["| task | algorithm | initial dev % / test % | top by dev: dev % / test % | sign test (wins/losses, p) "
           "| selected | selected test % |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r.get("sign")
        test = "-" if r.get("top_is_initial") or s is None else f"{s[0]}/{s[1]}, p={s[2]:.3g}"
        chosen = "initial" if r.get("top_is_initial") or r.get("kept_initial") else "top by dev"
        out.append(f"| {r['task']} | {r['algorithm']} | {pct(r.get('initial_dev'))} / {pct(r['initial_test'])} | "
                   f"{pct(r.get('top_dev'))} / {pct(r.get('top_test'))} | {test} | {chosen} | {pct(r['best_test'])} |")
    return "\n".join(out)


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
    load_before = os.getloadavg()
    rows = []
    for t in args.tasks:
        for a in args.algorithms:
            r = one_run(t, a, args, task_llm, out)
            rows.append(r)
            print(f"[{time.perf_counter() - t_all:6.0f}s] {t:<13} {a:<8} test {r['initial_test']} -> "
                  f"{r['best_test']}  calls {r['proposer_calls']}  {r['wall_s']:.0f}s  best: {r['best_prompt']!r}",
                  flush=True)
            (out / "results.json").write_text(json.dumps({"rows": rows}, indent=1))
    total = time.perf_counter() - t_all
    load_after = os.getloadavg()
    pct = (lambda v: "n/a" if v is None else f"{100 * v:.1f}")
    print(f"\nSmolLM2-135M-Instruct (embedded, 1 torch thread) as task model and proposer; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; dev {args.dev}, test {args.test}, "
          f"minibatch {args.minibatch}, population {args.population}, {args.batch} children/generation, "
          f"{args.llm_calls} proposer calls per run; total {total:.0f} s; load average before "
          f"{load_before[0]:.2f}, after {load_after[0]:.2f}\n")
    print(markdown_table(rows))
    print("\nSelection of the final prompt: the top prompt by dev accuracy replaces the initial one only "
          "when a one-sided sign test over the paired dev examples gives p <= 0.1 ([prompt] select_alpha):\n")
    print(selection_table(rows))
    if any(r["metric"] != "normalized" for r in rows):
        print("\nThe same test predictions under the strict normalized exact match (first line, lower case, "
              "punctuation removed):\n")
        print("| task | algorithm | initial test % (strict) | best test % (strict) |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['task']} | {r['algorithm']} | {pct(r['initial_test_normalized'])} | "
                  f"{pct(r['best_test_normalized'])} |")
    summary = {"args": vars(args), "total_s": total, "load_before": load_before, "load_after": load_after,
               "rows": rows}
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    try:
        plot_curves(rows).savefig(out / "progress.png", dpi=90)
        print(f"\nwrote {out / 'results.json'} and {out / 'progress.png'}; compare the runs with "
              f"'optforge show {out}/*-*' or 'optforge report {out}/*-* -o {out}/report.html'")
    except Exception as e:
        print(f"(no plot: {e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
