"""Candidate evaluations per minute on the default suite: vectorized vs one run at a time (a benchmark).

One candidate evaluation = the rule's learning-rate sweep on every task of the
suite with the evaluator's default protocol (9 log-spaced lrs from 1e-4 to 1
x 2 seeds = 18 training runs per task). Two ways of doing the same runs:

* vectorized: ONE stacked run per task (K = 18 model copies, what RuleEvaluator does);
* one at a time: 18 separate runs per task (K = 1 each, the same task code).

Both in this process with torch pinned to 1 thread (the evaluator's default per
evaluation; a pool runs one such evaluation per core, so multiply by the number
of cores for a machine's throughput, or pass ``--pool`` to measure it). Times
are wall and process-CPU seconds; on a shared machine the CPU time is what the
wall time would be on an idle core. With ``--loop-sample n`` the one-at-a-time
column runs only n of the 18 (lr, seed) runs per task, spread over the grid, and
scales up (marked "est.").

    python bench/eval_throughput.py [--fidelities tiny,small,full] [--rule adamw] [--loop-sample 4]
                                    [--pool 4]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

import dsl  # noqa: E402
import proxies  # noqa: E402
from evaluators import Candidate, RuleEvalConfig, RuleEvaluator  # noqa: E402
from evaluators.executors import available_cores  # noqa: E402


def timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def measure(fidelity: str, program, tasks, lrs, seeds, loop_sample: int | None) -> dict:
    vec_w = vec_c = loop_w = loop_c = 0.0
    per_task = {}
    pairs = [(lr, s) for lr in lrs for s in seeds]
    if loop_sample and loop_sample < len(pairs):
        idx = sorted({round(i * (len(pairs) - 1) / (loop_sample - 1)) for i in range(loop_sample)}) \
            if loop_sample > 1 else [len(pairs) // 2]
        sample = [pairs[i] for i in idx]
    else:
        sample = pairs
    scale = len(pairs) / len(sample)
    for name in tasks:
        task = proxies.get_task(name)
        w, c = timed(lambda: task.sweep(program, lrs, seeds, fidelity))
        lw, lc = timed(lambda: [task.sweep(program, [lr], [s], fidelity) for lr, s in sample])
        lw, lc = lw * scale, lc * scale
        per_task[name] = (w, c, lw, lc)
        vec_w, vec_c, loop_w, loop_c = vec_w + w, vec_c + c, loop_w + lw, loop_c + lc
    return {"vec": (vec_w, vec_c), "loop": (loop_w, loop_c), "tasks": per_task,
            "estimated": scale > 1, "runs": len(pairs), "sampled": len(sample)}


def per_min(seconds: float) -> float:
    return 60.0 / seconds if seconds > 0 else float("inf")


def pool_throughput(fidelity: str, n: int, tasks) -> tuple[float, float]:
    """(evaluations/min, seconds) of RuleEvaluator on a process pool, n distinct candidates, baselines
    computed beforehand (they are cached once per task and fidelity in a campaign)."""
    cands = []
    for i in range(n):  # distinct functions: AdamW with different beta2
        src = dsl.get_rule("adamw").source().replace("beta2=0.999", f"beta2={0.99 + 0.001 * i:.3f}")
        cands.append(Candidate(text=src))
    with RuleEvaluator(RuleEvalConfig(tasks=list(tasks), executor="pool")) as ev:
        ev.baselines(fidelity)
        t0 = time.perf_counter()
        res = ev.evaluate(cands, fidelity)
        dt = time.perf_counter() - t0
    bad = [r.status.value for r in res if not r.ok]
    if bad:
        print(f"  (pool: {len(bad)} candidates not ok: {bad})")
    return per_min(dt / n), dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fidelities", default="tiny,small")
    ap.add_argument("--rule", default="adamw", help="library rule to time")
    ap.add_argument("--tasks", help="comma list (default: proxies.DEFAULT_SUITE)")
    ap.add_argument("--loop-sample", type=int, default=None,
                    help="time only this many of the one-at-a-time runs per task and scale up")
    ap.add_argument("--pool", type=int, default=0, help="also time RuleEvaluator on a process pool with "
                    "this many candidates per fidelity")
    ap.add_argument("--per-task", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(1)
    cfg = RuleEvalConfig(executor="inprocess")
    tasks = args.tasks.split(",") if args.tasks else list(cfg.tasks)
    lrs, seeds = cfg.lr_grid.lrs(), list(cfg.seeds)
    program = dsl.get_rule(args.rule)
    print(f"machine: {platform.machine()}, {available_cores()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} thread), python {platform.python_version()}")
    print(f"rule {args.rule}; suite {', '.join(tasks)}; {len(lrs)} lrs x {len(seeds)} seeds "
          f"= {len(lrs) * len(seeds)} runs per task")
    for name in tasks:  # build data and warm up code paths outside the timings
        proxies.get_task(name).sweep(program, lrs[:1], seeds[:1], "tiny")

    hdr = (f"{'fidelity':<8} | {'vectorized s/eval':>17} {'evals/min':>9} {'(cpu)':>7} | "
           f"{'one-at-a-time s/eval':>20} {'evals/min':>9} {'(cpu)':>7} | {'speedup':>7} {'(cpu)':>6}")
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for fid in args.fidelities.split(","):
        m = measure(fid, program, tasks, lrs, seeds, args.loop_sample)
        (vw, vc), (lw, lc) = m["vec"], m["loop"]
        est = " est." if m["estimated"] else ""
        print(f"{fid:<8} | {vw:17.2f} {per_min(vw):9.2f} {per_min(vc):7.2f} | "
              f"{lw:15.2f}{est:>5} {per_min(lw):9.2f} {per_min(lc):7.2f} | {lw / vw:6.2f}x {lc / vc:5.2f}x",
              flush=True)
        if args.per_task:
            for t, (w, c, tlw, tlc) in m["tasks"].items():
                print(f"  {t:<14} vectorized {w:7.2f}s (cpu {c:6.2f})  one-at-a-time {tlw:7.2f}s "
                      f"(cpu {tlc:6.2f})  x{tlw / w:.2f}", flush=True)
        rows.append((fid, m))
        if args.pool:
            epm, dt = pool_throughput(fid, args.pool, tasks)
            print(f"  RuleEvaluator, pool of {available_cores()} workers, {args.pool} candidates: "
                  f"{dt:.1f}s, {epm:.2f} evals/min (wall)", flush=True)
    if rows and rows[0][1]["estimated"]:
        m = rows[0][1]
        print(f"est.: one-at-a-time time scaled up from {m['sampled']} of {m['runs']} runs per task")


if __name__ == "__main__":
    main()
