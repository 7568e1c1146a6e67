"""DSPy against optforge on the same task model, splits and task-model call budget.

Both optimize a prompt for the embedded SmolLM2-135M-Instruct, served to both over HTTP by
optforge's OpenAI-compatible server (``search.llm.server.OpenAICompatServer``, what
``optforge llm serve`` runs), started in this process on localhost in front of one local
model: one server for the **task model**, one for the **prompt model** (DSPy's COPRO / MIPROv2
instruction proposer, optforge's GA / DE / OPRO proposer). The task server counts every chat
request it receives (``chat_count``): that is the task-model call count of a run, counted the
same way for both libraries. Calls made while scoring the result on the test split are counted
apart and not charged to the search.

Same data for both: the generated task's train / dev / test splits (``proxies.prompts``); DSPy's
optimizers get ``trainset`` = train (demonstrations and bootstrapping) and ``valset`` = dev
(where they take one), optforge draws demonstrations from train and selects on dev. Both are
scored on test with the same metric (``contains`` for generation tasks: the normalized target
occurs in the normalized reply as whole words; DSPy's metric reads its parsed ``output`` field).

Methods (``--methods``): ``dspy-zero`` (the initial instruction, no optimizer),
``dspy-labeled`` (LabeledFewShot k), ``dspy-bootstrap`` (BootstrapFewShot, k demos),
``dspy-bootstrap-rs`` (BootstrapFewShotWithRandomSearch), ``dspy-copro``, ``dspy-mipro``
(MIPROv2, no ``auto``); ``optforge-ga``, ``optforge-de``, ``optforge-opro`` (instruction search,
zero-shot, as in bench/prompt_opt.py), ``optforge-demos`` (demonstration search: k train demos
to start, the no-LLM add / drop / replace / reorder / crossover operators, shown as earlier chat
turns), ``optforge-ga-demos`` (GA on the instruction of a k-demo candidate). The search-heavy
methods are sized to about ``--calls`` task-model calls (DSPy's by their own parameters, so the
measured count is reported per run; LabeledFewShot needs none, BootstrapFewShot one pass over
train).

    python bench/prompt_vs_dspy.py --tasks plural antonyms first_letter --seeds 0 1 2 --calls 120
    python bench/prompt_vs_dspy.py --tiny      # a smoke run (what the test does)

Needs the ``bench`` extra (``pip install -e '.[bench]'``: dspy) and the embedded model.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxies.prompts import PromptTask, generate_task, match
from search.core import Engine, parse_campaign
from search.llm import OpenAICompatServer
from search.llm.local import LocalLLM

DSPY_METHODS = ("dspy-zero", "dspy-labeled", "dspy-bootstrap", "dspy-bootstrap-rs", "dspy-copro", "dspy-mipro")
OPTFORGE_METHODS = ("optforge-ga", "optforge-de", "optforge-opro", "optforge-demos", "optforge-ga-demos")
METHODS = DSPY_METHODS + OPTFORGE_METHODS


# ------------------------------------------------------------------------------ servers

class Servers:
    """A task-model server and a prompt-model server on localhost in front of one backend."""

    def __init__(self, llm) -> None:
        lock = threading.Lock()
        self.task = OpenAICompatServer(llm, model_name="smollm2-task", llm_lock=lock).start()
        self.prompt = OpenAICompatServer(llm, model_name="smollm2-prompt", llm_lock=lock).start()

    def calls(self) -> tuple[int, int]:
        return self.task.chat_count, self.prompt.chat_count

    def close(self) -> None:
        self.task.stop()
        self.prompt.stop()


def metric_of(task: PromptTask) -> str:
    return "normalized" if task.metric == "label" else "contains"


# ---------------------------------------------------------------------------------- DSPy

def run_dspy(method: str, task: PromptTask, servers: Servers, seed: int, args) -> dict[str, Any]:
    """One DSPy optimizer on ``task``; returns test accuracy, call counts, what it learned."""
    import dspy  # here: DSPy is the optional `.[bench]` extra, needed only by the dspy-* methods
    metric = metric_of(task)
    task_lm = dspy.LM("openai/smollm2-task", api_base=servers.task.url, api_key="none", temperature=0.0,
                      max_tokens=args.dspy_max_tokens, cache=False, num_retries=1)
    prompt_lm = dspy.LM("openai/smollm2-prompt", api_base=servers.prompt.url, api_key="none", temperature=1.0,
                        max_tokens=args.proposer_tokens, cache=False, num_retries=1)
    # An unparsable reply of the 135M model scores 0 (DSPy's failure_score) instead of aborting the
    # optimizer after DSPy's default 10 errors.
    dspy.configure(lm=task_lm, max_errors=10 ** 6)

    def ex(e):
        return dspy.Example(input=e.input, output=e.output, targets=list(e.targets)).with_inputs("input")

    order = list(range(len(task.train)))
    random.Random(seed).shuffle(order)         # the search seed: LabeledFewShot samples with Random(0)
    train = [ex(task.train[i]) for i in order]
    dev, test = [ex(e) for e in task.dev], [ex(e) for e in task.test]

    def score(example, pred, trace=None) -> float:
        out = getattr(pred, "output", None)
        return match(out or "", example.targets, metric)

    student = dspy.Predict(dspy.Signature("input -> output", task.initial_prompt))
    k, threads = args.demos, args.threads
    t_calls0, p_calls0 = servers.calls()
    t0 = time.perf_counter()
    if method == "dspy-zero":
        prog = student
    elif method == "dspy-labeled":
        prog = dspy.LabeledFewShot(k=k).compile(student, trainset=train)
    elif method == "dspy-bootstrap":
        prog = dspy.BootstrapFewShot(metric=score, max_bootstrapped_demos=k, max_labeled_demos=k).compile(
            student, trainset=train)
    elif method == "dspy-bootstrap-rs":
        # 3 fixed programs (zero-shot, labeled, unshuffled bootstrap) + n random ones, each scored on dev
        n = max(1, args.calls // max(1, len(dev)) - 4)
        opt = dspy.BootstrapFewShotWithRandomSearch(metric=score, max_bootstrapped_demos=k, max_labeled_demos=k,
                                                    num_candidate_programs=n, num_threads=threads)
        prog = opt.compile(student, trainset=train, valset=dev)
    elif method == "dspy-copro":
        breadth = max(2, min(6, args.calls // max(1, 2 * len(train))))
        opt = dspy.COPRO(prompt_model=prompt_lm, metric=score, breadth=breadth, depth=2, init_temperature=1.0)
        prog = opt.compile(student, trainset=train, eval_kwargs={"num_threads": threads, "display_progress": False})
    elif method == "dspy-mipro":
        opt = dspy.MIPROv2(metric=score, prompt_model=prompt_lm, task_model=task_lm, max_bootstrapped_demos=k,
                           max_labeled_demos=k, auto=None, num_candidates=3, num_threads=threads, seed=seed,
                           verbose=False)
        mb = max(4, len(dev) // 2)
        trials = max(2, (args.calls - 3 * len(train)) // mb)
        prog = opt.compile(student, trainset=train, valset=dev, num_trials=trials, minibatch_size=mb,
                           minibatch_full_eval_steps=max(2, trials // 2))
    else:
        raise ValueError(f"unknown DSPy method {method!r}")
    search_s = time.perf_counter() - t0
    t_calls1, p_calls1 = servers.calls()
    preds: list[str] = [""] * len(test)

    def one(i: int) -> None:
        try:
            preds[i] = getattr(prog(input=test[i].input), "output", "") or ""
        except Exception as e:
            preds[i] = f"<error: {type(e).__name__}>"

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(len(test))))
    acc = sum(match(p, e.targets, metric) for p, e in zip(preds, test)) / len(test)
    p0 = prog.predictors()[0]
    return {"method": method, "test": acc, "task_calls": t_calls1 - t_calls0, "prompt_calls": p_calls1 - p_calls0,
            "test_calls": servers.calls()[0] - t_calls1, "search_s": search_s,
            "instruction": p0.signature.instructions, "demos": len(p0.demos),
            "errors": sum(p.startswith("<error") for p in preds), "predictions": preds[:5]}


# ------------------------------------------------------------------------------ optforge

def run_optforge(method: str, task: PromptTask, sizes: dict[str, int], servers: Servers, seed: int, args,
                 out: Path) -> dict[str, Any]:
    """One optforge prompt campaign on the engine, task model and proposer over HTTP."""
    task_name = task.name
    alg = method.removeprefix("optforge-").removesuffix("-demos")   # "optforge-demos" -> "demos"
    with_demos = method.endswith("demos")
    run_dir = out / f"{task_name}-{method}-s{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    mb = args.minibatch
    n_dev = len(task.dev)
    openai = {"backend": "openai", "api_key": "none", "concurrency": args.threads, "max_retries": 1}
    prompt: dict[str, Any] = {
        "task": task_name, "algorithm": alg, "sizes": sizes, "minibatch": mb, "max_tokens": args.max_tokens,
        "test_top": 1, "proposer_max_tokens": args.proposer_tokens, "select_alpha": 1.0,
        "task_model": {**openai, "model": "smollm2-task", "base_url": servers.task.url}}
    if task_name != "sentiment":
        prompt["metric"] = "contains"
    if with_demos:
        prompt["demos"] = args.demos
    camp = {"name": run_dir.name, "kind": "prompt", "random_seed": seed, "prompt": prompt,
            "llm": {**openai, "model": "smollm2-prompt", "base_url": servers.prompt.url,
                    "max_calls": args.proposer_calls},
            "search": {"population": 4, "batch_size": 2}, "funnel": {"promote_fraction": 0.5},
            # one evaluation unit = one task-model call: an evaluation costs its number of examples
            "budget": {"evaluations": args.calls, "llm_calls": args.proposer_calls,
                       "fidelity_cost": {"minibatch": mb, "dev": n_dev}}}
    c = parse_campaign(camp)
    t_calls0, p_calls0 = servers.calls()
    t0 = time.perf_counter()
    eng = Engine(c, run_dir, fresh=True)
    try:
        eng.run()
        final = eng.store.get_meta("prompt_final") or {}
    finally:
        eng.close()
    wall = time.perf_counter() - t0
    t_calls1, p_calls1 = servers.calls()
    tested = final.get("tested") or []
    test_calls = len(tested) * len(task.test)
    top = final.get("top_by_dev") or {}
    return {"method": method, "test": top.get("test"), "task_calls": t_calls1 - t_calls0 - test_calls,
            "prompt_calls": p_calls1 - p_calls0, "test_calls": test_calls, "search_s": wall,
            "instruction": top.get("text"), "initial_test": (final.get("initial") or {}).get("test"),
            "run": str(run_dir)}


# ---------------------------------------------------------------------------------- main

def markdown(rows: list[dict], methods: list[str]) -> str:
    """Test accuracy per task and method: mean over seeds (each seed's value), calls (mean).

    optforge's demonstration search starts from k random train demonstrations: that starting
    prompt's test accuracy (0 search calls, LabeledFewShot's counterpart) is the row
    ``optforge-demos (start)``."""
    rows = list(rows)
    for r in [r for r in rows if r.get("method") == "optforge-demos" and r.get("initial_test") is not None]:
        rows.append({**r, "method": "optforge-demos (start)", "test": r["initial_test"], "task_calls": 0,
                     "prompt_calls": 0})
    if "optforge-demos" in methods:
        methods = list(methods) + ["optforge-demos (start)"]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    out = ["| task | method | test accuracy %, mean (per search seed) | task-model calls (search, mean) "
           "| prompt-model calls |",
           "|---|---|---|---:|---:|"]
    for t in tasks:
        for m in methods:
            rs = [r for r in rows if r["task"] == t and r["method"] == m]
            if not rs:
                continue
            ok = sorted((r for r in rs if r.get("test") is not None), key=lambda r: r.get("seed", 0))
            if not ok:
                out.append(f"| {t} | {m} | did not run: {rs[0].get('error', '?')[:80]} | | |")
                continue
            mean = 100 * sum(r["test"] for r in ok) / len(ok)
            each = ", ".join(f"s{r.get('seed', 0)} {100 * r['test']:.1f}" for r in ok)
            calls = sum(r["task_calls"] for r in ok) / len(ok)
            pcalls = sum(r["prompt_calls"] for r in ok) / len(ok)
            out.append(f"| {t} | {m} | **{mean:.1f}** ({each}) | {calls:.0f} | {pcalls:.0f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["plural"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--calls", type=int, default=120, help="task-model calls for the search-heavy methods")
    ap.add_argument("--demos", type=int, default=4, help="demonstrations per prompt (k)")
    ap.add_argument("--train", type=int, default=20)
    ap.add_argument("--dev", type=int, default=20)
    ap.add_argument("--test", type=int, default=40)
    ap.add_argument("--minibatch", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=12, help="optforge task-model reply limit")
    ap.add_argument("--dspy-max-tokens", type=int, default=40, help="DSPy task-model reply limit (its field markers)")
    ap.add_argument("--proposer-tokens", type=int, default=64)
    ap.add_argument("--proposer-calls", type=int, default=8)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--tiny", action="store_true", help="a smoke run: 1 task, tiny splits and budget")
    ap.add_argument("--out", default="runs/bench_dspy")
    ap.add_argument("--table", action="store_true", help="print the table of every results.json under OUT, exit")
    args = ap.parse_args(argv)
    if args.table:   # every results.json under OUT (several invocations), failed repeats dropped
        rows = [r for f in sorted(Path(args.out).rglob("results.json")) for r in json.loads(f.read_text())["rows"]]
        print(markdown(rows, [m for m in METHODS if any(r["method"] == m for r in rows)]))
        return 0
    if args.tiny:
        args.train, args.dev, args.test, args.calls, args.minibatch = 6, 4, 4, 12, 2
        args.proposer_calls, args.proposer_tokens, args.dspy_max_tokens = 2, 24, 24
    sizes = {"train": args.train, "dev": args.dev, "test": args.test}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    servers = Servers(LocalLLM())
    rows: list[dict] = []
    failed: dict[str, dict[str, str]] = {}
    t_all = time.perf_counter()
    load0 = os.getloadavg()
    try:
        for seed in args.seeds:   # every task once before the next seed: a cut-short run still covers them
            for t in args.tasks:
                task = generate_task(t, seed=0, sizes=sizes)
                print(f"# seed {seed}: {task.summary()}; initial {task.initial_prompt!r}", flush=True)
                for m in args.methods:
                    if m in failed.get(t, {}):   # a method that cannot run with this model is tried once per task
                        rows.append({"method": m, "test": None, "task": t, "seed": seed,
                                     "error": f"not rerun: {failed[t][m]}"})
                        continue
                    try:
                        r = (run_dspy(m, task, servers, seed, args) if m.startswith("dspy")
                             else run_optforge(m, task, sizes, servers, seed, args, out))
                    except Exception as e:
                        first = (str(e).strip().splitlines() or [""])[0]
                        r = {"method": m, "test": None, "error": f"{type(e).__name__}: {first}"}
                        failed.setdefault(t, {})[m] = f"failed with seed {seed} ({type(e).__name__})"
                    r.update(task=t, seed=seed, load=os.getloadavg()[0])
                    rows.append(r)
                    acc = "n/a" if r.get("test") is None else f"{100 * r['test']:.1f}%"
                    print(f"[{time.perf_counter() - t_all:6.0f}s] {t} seed {seed} {m:<18} test {acc:>6}  "
                          f"task calls {r.get('task_calls', '-')}, prompt calls {r.get('prompt_calls', '-')}, "
                          f"{r.get('search_s', 0):.0f}s  {r.get('error') or repr(r.get('instruction'))[:70]}",
                          flush=True)
                    (out / "results.json").write_text(json.dumps({"rows": rows}, indent=1, default=str))
    finally:
        servers.close()
    total = time.perf_counter() - t_all
    load1 = os.getloadavg()
    print(f"\nsizes {sizes} (generated; small pools are cut proportionally), k = {args.demos}, "
          f"~{args.calls} task-model calls for the search-heavy methods; total {total:.0f} s; "
          f"load average {load0[0]:.2f} -> {load1[0]:.2f}\n")
    print(markdown(rows, args.methods))
    summary = {"args": vars(args), "total_s": total, "load_before": load0, "load_after": load1, "rows": rows}
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
