"""The zoo: every library optimizer tuned the same way and ranked against tuned AdamW.

Protocol (a benchmark, not a test; numbers depend on the machine and its load):

* rules: every ``dsl.library`` rule (``--rules`` to pick), plus the shipped discovered rules
  (``dsl.discovered``) unless ``--no-discovered``;
* tasks: the language-model ladder's smallest rung ``lm_s`` and a few other families
  (``--tasks``; default ``lm_s, char_lm, digits_mlp, digits_cnn``), at one fidelity (``--fidelity``,
  default ``small``);
* tuning, identical for every rule and for AdamW: learning rate on a 9-point log grid 1e-4..1
  (half-decade steps) x weight decay {0, 0.1} in one vectorized run per rule and task, successive
  halving keeping the best 3 of the 18 points after 30% of the steps, 2 training seeds
  (``--seeds``), the same seeds' init and data order for every rule;
* score per task: the seed-paired mean of ``log(AdamW loss / rule loss)`` at each rule's own tuned
  point, clipped to +-0.5 per seed (0 = tuned AdamW, +0.1 = about 10% lower loss); overall: the
  mean over tasks with a hierarchical bootstrap interval (tasks, then seeds) and a verdict from
  ``evaluators.estimate`` (``holds`` / ``indistinguishable`` / ``worse``), with AdamW-vs-AdamW
  noise floors per task (``--noise-replicates``, 0 = none: then a task counts as won when its own
  seed interval lies above 0).

Writes ``bench/results/zoo.md`` (the ranked table with machine, date and load) and
``bench/results/zoo.json`` (every estimate). Run it niced, alone on the machine if possible:

    nice -n 5 .venv/bin/python bench/zoo.py                        # ~30 min on 2 shared cores
    .venv/bin/python bench/zoo.py --rules adamw,muon --tasks lm_s --seeds 0,1 --fidelity tiny   # a look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dsl  # noqa: E402
from dsl.discovered import DISCOVERED  # noqa: E402
from evaluators import (  # noqa: E402
    Candidate,
    Estimate,
    RuleEvalConfig,
    RuleEvaluator,
    describe,
    estimate_results,
    noise_floors,
)

DEFAULT_TASKS = ["lm_s", "char_lm", "digits_mlp", "digits_cnn"]
#: the zoo's tuning protocol (RuleEvalConfig fields), the same for every rule and the baseline
PROTOCOL: dict = {"lr_grid": {"center": 0.01, "width": 4.0, "points": 9},
                  "wd_grid": {"values": [0.0, 0.1]},
                  "halving": {"rungs": [(0.3, 3)]},
                  "task_clip": 0.5}
RESULTS = ROOT / "bench" / "results"


def zoo_rules(names: list[str] | None = None, discovered: bool = True) -> dict[str, str]:
    """name -> DSL source: the library rules (or ``names``), then the discovered ones."""
    pool = {n: dsl.RULES[n] for n in dsl.list_rules()}
    if discovered:
        pool.update(DISCOVERED)
    if names is None:
        return pool
    unknown = [n for n in names if n not in pool]
    if unknown:
        raise SystemExit(f"unknown rule(s) {unknown}; known: {', '.join(pool)}")
    return {n: pool[n] for n in names}


#: rules measured first when a time limit may stop the run early: AdamW, then the matrix optimizers
#: and the rules the paper's comparison names, then the rest in library order
PRIORITY = ["adamw", "muon", "muon_scaled", "soap", "shampoo", "scion", "lion", "adam", "nesterov", "mars",
            "cautious_adamw", "lamb", "adafactor", "ademamix", "nadam", "sgd_momentum", "adam_mini", "conda"]


def by_priority(rules: dict[str, str]) -> dict[str, str]:
    """``rules`` with :data:`PRIORITY`'s names first (in that order), then the others as given."""
    first = [n for n in PRIORITY if n in rules]
    return {n: rules[n] for n in first + [n for n in rules if n not in first]}


def run_zoo(rules: dict[str, str], tasks: list[str], seeds: list[int], fidelity: str, *,
            workers: int | None = None, executor: str = "pool", noise_replicates: int = 0,
            cache_dir: str | None = None, n_boot: int = 4000, batch: int = 4,
            time_limit_s: float | None = None, on_batch=None, timeout_s: float | None = 600.0) -> dict:
    """Evaluate every rule under :data:`PROTOCOL`, ``batch`` rules per evaluator call; returns the
    JSON-able record of the run. With ``time_limit_s`` no new batch starts after that many seconds
    (the rules left are listed as ``skipped``; the noise floors are then skipped too);
    ``on_batch(record)`` gets the record so far after each batch; ``timeout_s`` limits one rule's work
    unit (a worker process past it is killed and the rule reported as timed out)."""
    cfg = RuleEvalConfig(tasks=tasks, seeds=seeds, executor=executor, workers=workers, cache_dir=cache_dir,
                         timeout_s=timeout_s, **PROTOCOL)
    ev = RuleEvaluator(cfg)
    t0 = time.perf_counter()
    names, results, noise = list(rules), [], {}
    skipped: list[str] = []

    def over() -> bool:
        return time_limit_s is not None and time.perf_counter() - t0 > time_limit_s

    try:
        for i in range(0, len(names), batch):
            if over():
                skipped = names[i:]
                break
            part = names[i:i + batch]
            results += ev.evaluate([Candidate(kind="rule", text=rules[n]) for n in part], fidelity)
            if on_batch:
                on_batch(_record(names, results, tasks, seeds, fidelity, cfg.clip, n_boot, noise, 0, [], t0))
        if noise_replicates and not over():
            floors = noise_floors(ev, fidelity, tasks, replicates=noise_replicates)
            noise = {t: f.floor for t, f in floors.items()}
    finally:
        ev.close()
    return _record(names, results, tasks, seeds, fidelity, cfg.clip, n_boot, noise,
                   noise_replicates if noise else 0, skipped, t0)


def _record(names, results, tasks, seeds, fidelity, clip, n_boot, noise, noise_replicates, skipped, t0) -> dict:
    rows = []
    for name, r in zip(names, results):
        row: dict = {"rule": name, "status": r.status.value, "reason": r.reason, "seconds": r.seconds,
                     "tasks": {}}
        ok = {t: tr for t, tr in r.tasks.items() if tr.status.value == "ok"}
        for t, tr in r.tasks.items():
            row["tasks"][t] = {"score": tr.score, "metric": tr.metric, "baseline": tr.baseline,
                               "lr": tr.best_lr, "wd": tr.extra.get("best_wd"), "status": tr.status.value}
        if r.ok and len(ok) == len(tasks):
            e = estimate_results(ok, noise or None, clip=clip, n_boot=n_boot)
            row["estimate"] = e.to_json()
            row["describe"] = describe(e)
        rows.append(row)
    rows.sort(key=lambda x: -x["estimate"]["score"] if "estimate" in x else float("inf"))
    return {"tasks": tasks, "seeds": seeds, "fidelity": fidelity, "protocol": PROTOCOL,
            "noise": noise, "noise_replicates": noise_replicates, "rows": rows,
            "skipped": skipped or [n for n in names[len(results):]],
            "seconds": time.perf_counter() - t0, "machine": machine()}


def machine() -> dict:
    """Where and when the numbers were measured."""
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = ["?"] * 3
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": " ".join(load),
            "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def _fmt(x: float | None, spec: str = "+.3f") -> str:
    return "-" if x is None else format(x, spec)


def markdown(rec: dict, load_before: str = "") -> str:
    """The ranked table (one row per rule) and the settings it was measured under."""
    tasks, m = rec["tasks"], rec["machine"]
    lines = [f"# The zoo, ranked ({rec['fidelity']} fidelity, {len(rec['seeds'])} seeds, {len(tasks)} tasks)", "",
             f"Measured {m['date']} on a {m['cpus']}-core CPU container (torch {m['torch']}, 1 torch thread per "
             f"worker), load average {load_before or '?'} before / {m['load']} after; the whole run took "
             f"{rec['seconds']:.0f} s.", "",
             "Score: seed-paired mean log(tuned AdamW loss / tuned rule loss), clipped to +-0.5 per seed; "
             "0 = tuned AdamW, higher is better. Interval: 95% hierarchical bootstrap (tasks, then seeds). "
             "Every rule and AdamW: lr 9 points 1e-4..1 x wd {0, 0.1}, successive halving keeping 3 "
             f"of 18 points at 30% of the steps, seeds {rec['seeds']}.", ""]
    if rec["noise"]:
        lines += ["Noise floors (AdamW vs AdamW, disjoint seeds, " f"{rec['noise_replicates']} replicates): "
                  + ", ".join(f"{t} {v:.3f}" for t, v in rec["noise"].items()), ""]
    head = ["rank", "rule", "score [95% CI]", "P(better)", "verdict"] + [f"{t} (lr, wd)" for t in tasks] + ["s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, row in enumerate(rec["rows"], 1):
        e = row.get("estimate")
        if e:
            cells = [f"{e['score']:+.3f} [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]", f"{e['p_improvement']:.2f}",
                     e["verdict"]]
        else:
            cells = ["-", "-", f"{row['status']}: {row['reason'][:60]}"]
        per = []
        for t in tasks:
            c = row["tasks"].get(t)
            if not c or c["status"] != "ok":
                per.append(c["status"] if c else "-")
            else:
                per.append(f"{c['score']:+.3f} ({c['lr']:.0e}, {_fmt(c['wd'], 'g')})")
        lines.append("| " + " | ".join([str(i), row["rule"], *cells, *per, f"{row['seconds']:.0f}"]) + " |")
    if rec.get("skipped"):
        lines += ["", f"Not measured (the run's time limit came first): {', '.join(rec['skipped'])}."]
    base = next((r for r in rec["rows"] if r["rule"] == "adamw"), None)
    if base:
        lines += ["", "Tuned AdamW's loss per task: " + ", ".join(
            f"{t} {base['tasks'][t]['baseline']:.4f}" for t in tasks if t in base["tasks"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", help="comma-separated rule names (default: every library rule)")
    ap.add_argument("--no-discovered", action="store_true", help="leave out dsl.discovered's rules")
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--fidelity", default="small")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--executor", default="pool", choices=["pool", "inprocess"])
    ap.add_argument("--noise-replicates", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=None, help="seconds after which no new batch starts")
    ap.add_argument("--batch", type=int, default=4, help="rules per evaluator call")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds one rule's work unit may run")
    ap.add_argument("--cache-dir", default=None, help="persistent result cache (reruns reuse it)")
    ap.add_argument("--out", default=str(RESULTS / "zoo.md"))
    ap.add_argument("--json", default=str(RESULTS / "zoo.json"))
    a = ap.parse_args(argv)
    rules = by_priority(zoo_rules(a.rules.split(",") if a.rules else None, discovered=not a.no_discovered))
    tasks = [t for t in a.tasks.split(",") if t]
    seeds = [int(s) for s in a.seeds.split(",") if s]
    load_before = machine()["load"]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)

    def write(rec: dict) -> None:
        Path(a.out).write_text(markdown(rec, load_before))
        Path(a.json).write_text(json.dumps(rec, indent=1))

    rec = run_zoo(rules, tasks, seeds, a.fidelity, workers=a.workers, executor=a.executor,
                  noise_replicates=a.noise_replicates, cache_dir=a.cache_dir, batch=a.batch,
                  time_limit_s=a.time_limit, on_batch=write, timeout_s=a.timeout)
    write(rec)
    text = markdown(rec, load_before)
    print(text)
    for row in rec["rows"]:
        if "describe" in row:
            print(f"{row['rule']}: {row['describe']}")
    return 0


def estimate_of(row: dict) -> Estimate | None:
    """The row's estimate as an ``Estimate`` (None when the rule failed on a task)."""
    return Estimate.from_json(row["estimate"]) if "estimate" in row else None


if __name__ == "__main__":
    raise SystemExit(main())
