"""Vectorized lr sweeps vs single runs on the rule proxy tasks (a benchmark, not a test).

For each task and fidelity: the time of one copy (K=1, the same stacked code),
of an 8-learning-rate sweep (K=8) and of 8 lrs x 2 seeds (K=16), all as ONE
vectorized run each, and the ratio sweep / single. For digits_mlp it also times
a plain PyTorch single run (nn.Sequential + torch.optim.AdamW(foreach=True), same
data, batch size and steps) as an outside reference. Times are the best of
``--repeat`` runs (the machine may be shared).

    python bench/proxy_sweep.py [--tasks a,b] [--fidelities tiny,small,full] [--repeat 3]
    python bench/proxy_sweep.py --generic [--fidelities tiny,small] [--repeat 3]

``--generic`` times the hand-written digits_mlp against the same MLP (same data,
batch, schedule, wd, steps) written as a generic ``ModuleTask`` (torch.func vmap
over functional_call), 9 lrs x 2 seeds = 18 copies, AdamW.

Threads: sweeps use 1 torch thread unless OPTFORGE_TORCH_THREADS=n (or "default") says otherwise;
the plain-torch reference runs under the same setting.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dsl import get_rule
from proxies import ModuleTask, get_task, list_tasks
from proxies.tasks.datasets import digits_images
from proxies.tasks.train import TorchThreads, sweep_threads

ADAMW = get_rule("adamw")  # the library's AdamW, the same text the tests check against torch.optim
LRS8 = [float(x) for x in np.logspace(-4, -0.5, 8)]


def best_time(fn, repeat: int) -> tuple[float, float]:
    """(best wall seconds, best process CPU seconds) over ``repeat`` runs.

    On a shared machine the wall time includes waiting for other processes; the
    process CPU time (all threads) does not, and with one torch thread it is what
    the wall time would be on an idle core.
    """
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def plain_torch_mlp(steps: int) -> None:
    """digits_mlp trained the ordinary way: one model, torch.optim.AdamW, same batches and evals."""
    task = get_task("digits_mlp")
    d = task.data
    order = task.prepare([0], steps)[:, 0]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, task.hidden), torch.nn.ReLU(), torch.nn.Linear(task.hidden, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=task.weight_decay, foreach=True)
    evals = set(np.linspace(0, steps, task.n_points).round().astype(int).tolist())
    for t in range(steps + 1):
        if t in evals:
            with torch.no_grad():
                z = model(d["x_val"])
                torch.nn.functional.cross_entropy(z, d["y_val"]), (z.argmax(-1) == d["y_val"]).float().mean()
        if t == steps:
            break
        idx = order[t]
        loss = torch.nn.functional.cross_entropy(model(d["x_train"][idx]), d["y_train"][idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def generic_mlp() -> ModuleTask:
    """digits_mlp as a ModuleTask: the same function class, data, batch, schedule and budgets."""
    h = get_task("digits_mlp")
    ce = torch.nn.functional.cross_entropy
    return ModuleTask("generic_digits_mlp", lambda: torch.nn.Sequential(
        torch.nn.Linear(64, h.hidden), torch.nn.ReLU(), torch.nn.Linear(h.hidden, 10)),
        lambda: digits_images(flat=True), ce, steps=h.steps, batch_size=h.batch, weight_decay=h.weight_decay,
        schedule=h.schedule, blowup=h.blowup, salt=h.salt)


def generic(fidelities: list[str], repeat: int) -> None:
    lrs = [float(x) for x in np.logspace(-4, 0, 9)]
    hand, gen = get_task("digits_mlp"), generic_mlp()
    print(f"{'fid':<6} {'steps':>5} | {'hand-written wall':>17} {'cpu':>7} | {'ModuleTask wall':>15} {'cpu':>7} | "
          f"{'ratio (cpu)':>11}")
    for fid in fidelities:
        for t in (hand, gen):
            t.sweep(ADAMW, lrs[:2], [0], fid)
        th = best_time(lambda fid=fid: hand.sweep(ADAMW, lrs, [0, 1], fid), repeat)
        tg = best_time(lambda fid=fid: gen.sweep(ADAMW, lrs, [0, 1], fid), repeat)
        print(f"{fid:<6} {hand.steps[fid]:>5} | {th[0]:>17.3f} {th[1]:>7.3f} | {tg[0]:>15.3f} {tg[1]:>7.3f} | "
              f"{tg[1] / th[1]:>10.2f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generic", action="store_true", help="hand-written digits_mlp vs the same ModuleTask")
    ap.add_argument("--tasks", default=",".join(list_tasks()))
    ap.add_argument("--fidelities", default="tiny,small,full")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.generic:
        print(f"torch {torch.__version__}, 1 thread, load avg at start {os.getloadavg()[0]:.2f}, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        with TorchThreads(sweep_threads()):
            generic(args.fidelities.split(","), args.repeat)
        print(f"load avg at end {os.getloadavg()[0]:.2f}")
        return
    print(f"torch {torch.__version__}, sweep threads {sweep_threads() or torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}, "
          f"load avg at start {os.getloadavg()[0]:.2f}")
    print("wall = best wall-clock seconds, cpu = best process CPU seconds (see best_time)")
    print(f"{'task':<14} {'fid':<6} {'steps':>5} | {'wall K=1':>8} {'K=8':>7} {'8/1':>5} {'K=16':>7} {'16/1':>5} | "
          f"{'cpu K=1':>8} {'K=8':>7} {'8/1':>5} {'K=16':>7} {'16/1':>5}")
    for name in args.tasks.split(","):
        task = get_task(name)
        for fid in args.fidelities.split(","):
            task.sweep(ADAMW, LRS8[:2], [0], fid)   # warm caches (data, orders)
            t1 = best_time(lambda task=task, fid=fid: task.sweep(ADAMW, [1e-3], [0], fid), args.repeat)
            t8 = best_time(lambda task=task, fid=fid: task.sweep(ADAMW, LRS8, [0], fid), args.repeat)
            t16 = best_time(lambda task=task, fid=fid: task.sweep(ADAMW, LRS8, [0, 1], fid), args.repeat)
            row = [f"{name:<14} {fid:<6} {task.steps[fid]:>5}"]
            for j in (0, 1):
                row.append(f"{t1[j]:>8.3f} {t8[j]:>7.3f} {t8[j] / t1[j]:>5.2f} {t16[j]:>7.3f} {t16[j] / t1[j]:>5.2f}")
            print(" | ".join(row), flush=True)
            if name == "digits_mlp":
                with TorchThreads(sweep_threads()):
                    tp = best_time(lambda task=task, fid=fid: plain_torch_mlp(task.steps[fid]), args.repeat)
                print(f"{'':<14} {fid:<6} plain torch nn.Sequential + AdamW(foreach), one run: wall {tp[0]:.3f} s, "
                      f"cpu {tp[1]:.3f} s; 8-lr sweep / plain run: wall {t8[0] / tp[0]:.2f}, "
                      f"cpu {t8[1] / tp[1]:.2f}", flush=True)
    print(f"load avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
