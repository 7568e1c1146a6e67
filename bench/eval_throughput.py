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

``--tuning`` instead compares tuning protocols on a fixed set of rules (the dsl
library plus ``--mutants`` textual mutants of it: a numeric constant scaled, or a
``+``/``-`` swapped): today's lr grid (9 lrs, each task's fixed wd), the full lr x wd
grid (9 x 5 = 45 points, the reference), and successive halving over that grid at
several rung settings. For each it reports the training cost (copy-steps and CPU
seconds, baselines included) and how it ranks the rules against the full grid
(Spearman and Kendall rank correlation of the overall scores, top-1 agreement,
top-5 overlap):

    python bench/eval_throughput.py --tuning [--tasks a,b] [--mutants 30] [--fidelity tiny] [--only "wd 3"]

``--preset-cost`` times one candidate's sweeps on the suite under today's protocol and each of
``evaluators.TUNING_PRESETS`` (CPU seconds and copy-steps per task):

    python bench/eval_throughput.py --preset-cost [--rule lion] [--tasks a,b] [--fidelity tiny]

``--race`` compares the funnel's promotion modes at its top fidelity (``[funnel] mode``,
search.core.race) on the same rules: every rule is scored once on each of ``--blocks`` seed blocks
(the search's seeds, then the rule kind's race blocks) and on ``--ref-seeds`` reference seeds of
their own, under a campaign's default protocol; then candidates arrive in random orders (batches
of 2, as in a campaign) and each mode is replayed on those scores: ``quantile`` (one block each,
today), ``race`` (contenders race the incumbent, :func:`search.core.race.race`) and ``all blocks``
(every candidate on every block). Reported: evaluations spent, Spearman / Kendall of each mode's
ranking against the reference ranking, and, at an equal budget of evaluations, the reference score
of each mode's pick below the reference's best (regret):

    python bench/eval_throughput.py --race [--mutants 35] [--blocks 4] [--ref-seeds 6] [--orders 20]
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch
from scipy.stats import kendalltau, spearmanr

import dsl
import proxies
from evaluators import (
    TUNING_PRESETS,
    Candidate,
    LrGrid,
    RuleEvalConfig,
    RuleEvaluator,
    SuccessiveHalving,
    WdGrid,
)
from evaluators.executors import available_cores

#: cheap tasks of varied kinds for the tuning comparison (hand-written and generic, val metric)
TUNING_TASKS = ["quadratic", "digits_mlp", "digits_ae", "cancer_bce", "diabetes_reg"]
#: tuning protocols compared against the full lr x wd grid: name -> (lr points, wd values, SH rungs or None);
#: 5 lr points span the same 1e-4 .. 1 range at decade steps
WD3 = [0.0, 1e-2, 1e-1]
PROTOCOLS = {"SH 10%->15, 30%->5, 60%->2": (9, None, [(0.1, 15), (0.3, 5), (0.6, 2)]),
             "SH 20%->9, 50%->3": (9, None, [(0.2, 9), (0.5, 3)]),
             "SH 30%->5": (9, None, [(0.3, 5)]),
             "lr 9 x wd 3, SH 20%->3": (9, WD3, [(0.2, 3)]),
             "lr 9 x wd 3, SH 30%->3": (9, WD3, [(0.3, 3)]),
             "lr 5 x wd 3, no SH": (5, WD3, None),
             "lr 5 x wd 3, SH 30%->3": (5, WD3, [(0.3, 3)])}


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
        w, c = timed(lambda task=task: task.sweep(program, lrs, seeds, fidelity))
        lw, lc = timed(lambda task=task: [task.sweep(program, [lr], [s], fidelity) for lr, s in sample])
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


def mutants(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct (by fingerprint) parseable textual mutants of the library rules."""
    rng = random.Random(seed)
    names = dsl.list_rules()
    seen = {str(dsl.fingerprint(dsl.get_rule(r))) for r in names}
    out: list[str] = []
    while len(out) < n:
        src = dsl.get_rule(rng.choice(names)).source()
        head, _, body = src.partition("\n")
        if rng.random() < 0.75:      # scale a numeric constant (a default or a literal in the body)
            nums = list(re.finditer(r"(?<![\w.])\d+\.?\d*(e-?\d+)?", src))
            if not nums:
                continue
            m = rng.choice(nums)
            x = float(m.group())
            f = rng.choice([0.5, 0.8, 1.25, 2.0])
            y = 1 - (1 - x) * f if 0.5 < x < 1 else x * f
            src = src[:m.start()] + f"{y:.6g}" + src[m.end():]
        else:                        # swap one + / - in the body
            ops = [i for i, c in enumerate(body) if c in "+-" and body[i - 1] == " "]
            if not ops:
                continue
            i = rng.choice(ops)
            body = body[:i] + ("-" if body[i] == "+" else "+") + body[i + 1:]
            src = head + "\n" + body
        try:
            key = str(dsl.fingerprint(dsl.parse(src)))
        except Exception:
            continue
        if key not in seen:
            seen.add(key)
            out.append(src)
    return out


def rank_stats(ref: list[float], other: list[float]) -> dict:
    top = lambda xs, k: set(sorted(range(len(xs)), key=lambda i: -xs[i])[:k])
    return {"spearman": float(spearmanr(ref, other)[0]), "kendall": float(kendalltau(ref, other)[0]),
            "top1": top(ref, 1) == top(other, 1), "top5": len(top(ref, 5) & top(other, 5)),
            # the full grid's score of this protocol's pick, below the full grid's best
            "regret": max(ref) - ref[next(iter(top(other, 1)))]}


def tuning(tasks: list[str], n_mutants: int, fidelity: str, only: list[str] | None = None) -> None:
    rules = [dsl.get_rule(r).source() for r in dsl.list_rules()] + mutants(n_mutants)
    cands = [Candidate(text=r) for r in rules]
    base = dict(tasks=tasks, executor="inprocess")
    protocols = {"lr grid (today: 9 lrs, fixed wd)": RuleEvalConfig(**base),
                 "full lr x wd grid (9 x 5)": RuleEvalConfig(wd_grid=WdGrid(), **base)}
    for name, (n_lr, wds, rungs) in PROTOCOLS.items():
        if only and not any(o in name for o in only):
            continue
        protocols[name] = RuleEvalConfig(lr_grid=LrGrid(points=n_lr), wd_grid=WdGrid(values=wds or WdGrid().values),
                                         halving=None if rungs is None else SuccessiveHalving(rungs=rungs), **base)
    print(f"{len(rules)} rules ({len(rules) - n_mutants} library + {n_mutants} mutants); tasks {', '.join(tasks)}; "
          f"fidelity {fidelity}; seeds 0, 1; wd grid {WdGrid().values}")
    scores, costs = {}, {}
    for name, cfg in protocols.items():
        t0, c0 = time.perf_counter(), time.process_time()
        with RuleEvaluator(cfg) as ev:
            res = ev.evaluate(cands, fidelity)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        steps = 0
        for r in res:
            for t, tr in r.tasks.items():
                n_pts = len(tr.extra.get("wds") or tr.extra.get("lrs") or [])
                steps += tr.extra.get("copy_steps", n_pts * len(cfg.seeds) * proxies.get_task(t).steps[fidelity])
        scores[name] = [r.score for r in res]
        costs[name] = (steps, wall, cpu, sum(r.ok for r in res))
        print(f"  {name}: {wall:.1f}s wall, {cpu:.1f}s cpu, {sum(r.ok for r in res)} ok", flush=True)
    ref_name = "full lr x wd grid (9 x 5)"
    ref = scores[ref_name]
    ok = [i for i, x in enumerate(ref) if x > -1e8]
    ref_steps = costs[ref_name][0]
    print(f"\nrank agreement with the full lr x wd grid over the {len(ok)} rules it scores ok:")
    print(f"{'protocol':<36} | {'copy-steps':>10} {'of full':>7} | {'cpu s':>7} | {'spearman':>8} {'kendall':>7} "
          f"{'top-1':>5} {'top-5':>5} {'regret':>7}")
    for name in protocols:
        st = rank_stats([ref[i] for i in ok], [scores[name][i] for i in ok])
        steps, wall, cpu, _ = costs[name]
        print(f"{name:<36} | {steps:10d} {steps / ref_steps:7.1%} | {cpu:7.1f} | {st['spearman']:8.3f} "
              f"{st['kendall']:7.3f} {'yes' if st['top1'] else 'no':>5} {st['top5']:>3}/5 {st['regret']:7.4f}",
              flush=True)
    best = max(ok, key=lambda i: ref[i])
    print(f"full grid's best: rule {best} ({rules[best].partition('(')[0][4:]}), score {ref[best]:+.4f}; "
          f"regret = that score minus the full grid's score of the protocol's pick")


def preset_cost(tasks: list[str], fidelity: str, rule: str) -> None:
    """CPU seconds and copy-steps of one candidate's sweeps on ``tasks`` under today's protocol and each
    of ``evaluators.TUNING_PRESETS`` (the rule is timed as a candidate; its baselines run first)."""
    program = dsl.get_rule(rule)
    for name, preset in {"today (9 lrs, fixed wd)": {}, **TUNING_PRESETS}.items():
        cfg = RuleEvalConfig(tasks=tasks, executor="inprocess", **preset)
        with RuleEvaluator(cfg) as ev:
            ev.baselines(fidelity)
            c0 = time.process_time()
            r = ev.evaluate([Candidate(text=program.source() + "\n")], fidelity)[0]
            cpu = time.process_time() - c0
        per = ", ".join(f"{t} {tr.extra.get('copy_steps', '-')}" for t, tr in r.tasks.items())
        print(f"{name:<26} {cpu:7.2f} s cpu  status {r.status.value}  copy-steps: {per}", flush=True)


def race_bench(tasks: list[str], n_mutants: int, fidelity: str, n_blocks: int, ref_seeds: int, orders: int) -> None:
    """The ``--race`` comparison (module docstring): scores first, then each mode replayed on them."""
    import numpy as np

    from search.core.race import RaceConfig, race, race_score
    from search.rules.kind import RuleKind
    from search.rules.tasksets import with_tuning_defaults

    rules = [dsl.get_rule(r).source() for r in dsl.list_rules()] + mutants(n_mutants)
    cands = [Candidate(text=r) for r in rules]
    cfg = RuleEvalConfig(**with_tuning_defaults({"tasks": tasks, "executor": "inprocess"}))
    search_ev = RuleEvaluator(cfg)
    evs = [search_ev] + [RuleKind().block_evaluator(search_ev, b) for b in range(1, n_blocks)]
    ref_ev = RuleEvaluator(cfg.model_copy(update={"seeds": list(range(2000, 2000 + ref_seeds))}),
                           executor=search_ev.executor, cache=search_ev.cache)
    print(f"{len(rules)} rules ({len(rules) - n_mutants} library + {n_mutants} mutants); tasks {', '.join(tasks)}; "
          f"fidelity {fidelity}; blocks: " + ", ".join(str(e.config.seeds) for e in evs)
          + f"; reference seeds {ref_ev.config.seeds}; protocol: a campaign's default (budget preset, clip 0.5)")
    blocks: list[list] = []
    t0, c0 = time.perf_counter(), time.process_time()
    for ev in evs:
        blocks.append(ev.evaluate(cands, fidelity))
        print(f"  block {ev.config.seeds}: {time.perf_counter() - t0:.0f}s wall", flush=True)
    ref = [r.score for r in ref_ev.evaluate(cands, fidelity)]
    print(f"  scored in {time.perf_counter() - t0:.0f}s wall, {time.process_time() - c0:.0f}s cpu", flush=True)
    ok = [i for i, x in enumerate(ref) if x > -1e8 and blocks[0][i].ok]
    n = len(ok)
    by_rule = {i: [blocks[b][i] for b in range(n_blocks)] for i in ok}

    def replay(order: list[int], mode: str, cfg_r: RaceConfig | None, budget: float | None) -> tuple[dict, int]:
        """Scores each mode ends with (rule -> score) and the evaluations it spent, arrivals in ``order``."""
        have: dict[int, list] = {}
        spent = 0
        for j in range(0, len(order), 2):
            batch = order[j:j + 2]
            if budget is not None and spent + len(batch) > budget:
                break
            if mode == "all":
                for i in batch:
                    have[i] = list(by_rule[i][:n_blocks])
                spent += len(batch) * n_blocks
                continue
            inc = max(have, key=lambda i: (race_score(have[i]), -i)) if have else None
            for i in batch:
                have[i] = [by_rule[i][0]]
            spent += len(batch)
            if mode == "race":
                def evaluate(xs: list[int], b: int) -> None:
                    nonlocal spent
                    for x in xs:
                        have[x].append(by_rule[x][b])
                    spent += len(xs)
                race(batch, inc, lambda i: have[i], evaluate, cfg_r, clip=cfg.clip, ident=lambda i: i)
        return {i: race_score(v) for i, v in have.items()}, spent

    modes = {"quantile (today: 1 block each)": ("quantile", None)}
    for a in (0.05, 0.1, 0.2):
        modes[f"race, {n_blocks} blocks, alpha {a}"] = ("race", RaceConfig(blocks=n_blocks, alpha=a))
    modes["race, 3 blocks, alpha 0.1"] = ("race", RaceConfig(blocks=min(3, n_blocks), alpha=0.1))
    modes[f"all {n_blocks} blocks each"] = ("all", None)
    rng = random.Random(0)
    order_list = [rng.sample(ok, n) for _ in range(orders)]
    best_ref = max(ref[i] for i in ok)
    print(f"\n{n} rules scored ok (reference best {best_ref:+.4f}); {orders} arrival orders")
    print(f"{'mode':<34} | {'evals':>6} {'per rule':>8} | {'spearman':>8} {'kendall':>7} {'top-5':>5} | "
          f"{'regret, all rules':>17} | {'regret at equal budget':>22}")
    budget = float(n)          # equal budget: what quantile spends on every rule once
    for name, (mode, cfg_r) in modes.items():
        sp, kt, t5, reg, spent_all, reg_b = [], [], [], [], [], []
        for order in order_list:
            sc, spent = replay(order, mode, cfg_r, None)
            st = rank_stats([ref[i] for i in ok], [sc[i] for i in ok])
            sp.append(st["spearman"])
            kt.append(st["kendall"])
            t5.append(st["top5"])
            reg.append(st["regret"])
            spent_all.append(spent)
            scb, _ = replay(order, mode, cfg_r, budget / 2)
            pick = max(scb, key=lambda i: (scb[i], -i))
            reg_b.append(best_ref - ref[pick])
        print(f"{name:<34} | {np.mean(spent_all):6.0f} {np.mean(spent_all) / n:8.2f} | {np.mean(sp):8.3f} "
              f"{np.mean(kt):7.3f} {np.mean(t5):5.1f} | {np.mean(reg):17.4f} | {np.mean(reg_b):22.4f}", flush=True)
    print(f"equal budget: {budget / 2:.0f} evaluations (half the rules once), the mean over orders of the reference "
          "score of the mode's pick below the reference's best rule")


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
    ap.add_argument("--tuning", action="store_true", help="compare tuning protocols (see the docstring)")
    ap.add_argument("--mutants", type=int, default=30)
    ap.add_argument("--fidelity", default="tiny", help="fidelity of --tuning")
    ap.add_argument("--preset-cost", action="store_true", help="CPU cost of one candidate under today's "
                    "protocol and each TUNING_PRESETS entry (--tasks, --fidelity, --rule)")
    ap.add_argument("--only", help="--tuning: comma list of substrings; run only the matching protocols "
                    "(the lr-only and full-grid references always run)")
    ap.add_argument("--race", action="store_true", help="compare the funnel's promotion modes (see the docstring)")
    ap.add_argument("--blocks", type=int, default=4, help="--race: seed blocks per rule (2 seeds each)")
    ap.add_argument("--ref-seeds", type=int, default=6, help="--race: seeds of the reference ranking")
    ap.add_argument("--orders", type=int, default=20, help="--race: random arrival orders replayed")
    args = ap.parse_args()
    if args.race:
        torch.set_num_threads(1)
        print(f"machine: {platform.machine()}, {available_cores()} cores, torch {torch.__version__}, "
              f"python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
              f"load {os.getloadavg()[0]:.2f}")
        race_bench(args.tasks.split(",") if args.tasks else TUNING_TASKS, args.mutants, args.fidelity, args.blocks,
                   args.ref_seeds, args.orders)
        print(f"load after: {os.getloadavg()[0]:.2f}")
        return
    if args.preset_cost:
        torch.set_num_threads(1)
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}")
        preset_cost(args.tasks.split(",") if args.tasks else list(proxies.DEFAULT_SUITE), args.fidelity, args.rule)
        print(f"load after: {os.getloadavg()[0]:.2f}")
        return
    if args.tuning:
        torch.set_num_threads(1)
        print(f"machine: {platform.machine()}, {available_cores()} cores, torch {torch.__version__}, "
              f"python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
              f"load {os.getloadavg()[0]:.2f}")
        tuning(args.tasks.split(",") if args.tasks else TUNING_TASKS, args.mutants, args.fidelity,
               args.only.split(",") if args.only else None)
        print(f"load after: {os.getloadavg()[0]:.2f}")
        return

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
