"""Discovery benchmark: does the search find rules that beat tuned AdamW where nothing selected them?

Current protocol (``--bank``): ``examples/discovery.toml`` - seeds from the zoo (adamw, muon, lion),
the sampled task bank (fresh search tasks every generation, a fixed validation bank, a test bank of
other families), the funnel tiny -> small, thorough lr x wd tuning - run as two arms at EQUAL
wall-clock per search seed (``--bank-seeds``, interleaved so load drifts hit both): random operators
alone, and the operator bandit (UCB) with the embedded LLM's operators. Each winner is then checked
by ``optforge verify`` (test splits, unseen training seeds, the validation and test banks), and the
record keeps the verified score (with its interval and verdict where verify gives them), the banks,
the validation track and any meta-overfitting warning. ``--bank-table`` prints the rows:

    nice python bench/discovery.py --bank --bank-seeds 0,1,2 --bank-wall 3000     # ~2 h per seed here
    # both arms of a seed as parallel jobs at equal wall-clock, the cheaper tuning, verify afterwards:
    python bench/discovery.py --bank --bank-seeds 0 --bank-arms random --bank-wall 900 --tuning budget \
        --workers 1 --phase search &      # and the same with --bank-arms bandit_llm, then --phase verify
    nice python bench/discovery.py --bank --bank-seeds 0 --bank-wall 90 --verify-fidelity tiny \
        --verify-seeds 2,3 --noise-replicates 1 --executor inprocess       # a smoke run (~15 min here)

Earlier protocols (fixed task lists, kept for their recorded results):


1. Search: seed ``sgd_momentum``; tasks ``digits_logreg`` and ``digits_mlp`` (validation loss
   on scikit-learn's digits); funnel tiny -> small; one training seed (0); each rule tuned on
   a 9-point lr grid 1e-4..1 and scored against AdamW tuned on the same grid
   (score = mean log(AdamW loss / rule loss); 0 = as good as tuned AdamW).
2. Held-out check: the simplified best rule, SGD-momentum and AdamW are re-scored on the tasks'
   held-out TEST split (data the search never saw: digits' 360 test images, char_lm's test
   modules), with UNSEEN training seeds (1, 2), at the ``small`` fidelity, on the two search tasks
   plus ``char_lm`` (a task the search never saw), against AdamW tuned the same way on the same
   split. The lr is tuned on the reported split for every rule alike (as ``optforge eval --split
   test`` does). For comparison the same check is also run on the validation split (the one the
   search selected on), so the table shows how much of a rule's margin was selection on val.
3. The same search budget with ``llm_share`` of the children proposed by the LLM backend
   (default: the embedded local model); skipped with ``--no-llm`` or when no backend loads.

Transfer protocol (``--transfer``, fixed task lists): random-only campaigns of ``examples/discovery.toml`` (search
tasks, a validation stage on disjoint families, lr x wd tuning with successive halving, two training
seeds), one per search seed (``--transfer-seeds 0,1,2``), each followed by ``optforge verify`` of its
winner on the test splits with unseen seeds on four transfer families neither the search nor the
validation saw; ``--transfer-table`` prints per-seed rows and the mean and spread of the verified
score. ``--budget`` / ``--wall`` override the file's budget:

    nice python bench/discovery.py --transfer --transfer-seeds 0,1,2 --budget 600 --wall 900

``--transfer-arm bandit_llm`` runs the same protocol with the embedded LLM's operators under the UCB
operator bandit (the bandit arm; at most ``--llm-calls`` calls), at the same ``--wall``; its results
sit next to the random arm's (``transfer_bandit_llm_s<seed>.json``) and the table shows both arms.

Bandit-versus-random protocol (``--bandit-vs-random``): random operators alone against the operator bandit with
the embedded LLM's operators (``[operators.bandit] algorithm = "ucb"``), at equal wall-clock
(``--bandit-wall`` seconds of search each; the unit budget is out of reach), one pair per search
seed (``--bandit-seeds 0,1,2``, interleaved), each winner scored by the held-out check below;
``--bandit-table`` prints the rows and the mean and spread per arm:

    flock /tmp/of-bench.lock python bench/discovery.py --bandit-vs-random --bandit-wall 120

Each campaign is one job of at most ~20 min on 2 CPU cores; run them one at a time (under the
shared benchmark lock when other work runs), then print the tables:

    flock /tmp/of-bench.lock python bench/discovery.py --only random --budget 800    # ~3 min here
    flock /tmp/of-bench.lock python bench/discovery.py --only llm --budget 800 --llm-share 0.05 --llm-calls 32
                                                                         # ~5.5 min here (32 LLM calls)
    python bench/discovery.py --table                                    # markdown tables of both
    python bench/discovery.py --budget 120 --no-llm                      # quick look
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dsl  # noqa: E402
from evaluators import TUNING_PRESETS, Candidate, RuleEvalConfig, RuleEvaluator, with_tuning_preset  # noqa: E402
from search.core import Engine, RunStore, parse_campaign, run_campaign  # noqa: E402
from search.report import PlainProgress  # noqa: E402
from search.rules import verify_run, verify_table  # noqa: E402

SEARCH_TASKS = ["digits_logreg", "digits_mlp"]
HELDOUT_TASKS = ["digits_logreg", "digits_mlp", "char_lm"]
HELDOUT_SEEDS = [1, 2]
HELDOUT_SPLIT = "test"
LR_GRID = {"center": 0.01, "width": 4.0, "points": 9}
#: the tuning every recorded result of this bench used (the campaign default is the cheaper "budget")
THOROUGH = copy.deepcopy(TUNING_PRESETS["thorough"])   # a copy: the preset's dicts are shared


def campaign_dict(name: str, budget: int, wall: float, llm_share: float, executor: str,
                  llm_calls: int = 0, search_seeds: list[int] | None = None) -> dict:
    d = {
        "name": name, "kind": "rule", "random_seed": 0, "seed_rules": ["sgd_momentum"],
        "tasks": SEARCH_TASKS, "fidelities": ["tiny", "small"], "eval_seeds": search_seeds or [0], "executor": executor,
        "evaluator": {"lr_grid": LR_GRID, **THOROUGH},
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


def heldout(rules: dict[str, str], executor: str, split: str = HELDOUT_SPLIT) -> dict:
    """Scores vs tuned AdamW on unseen seeds (and an unseen task) on ``split``, small fidelity."""
    ev = RuleEvaluator(RuleEvalConfig(tasks=HELDOUT_TASKS, seeds=HELDOUT_SEEDS, lr_grid=LR_GRID,
                                      executor=executor, split=split))
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
        out["_split"] = split
        return out
    finally:
        ev.close()


def _table(out: Path) -> str:
    """Markdown tables from every ``result_<campaign>.json`` under ``out``."""
    rows, old = [], []
    for f in sorted(out.glob("result_*.json")):
        r = json.loads(f.read_text())
        if r.get("heldout_split") == HELDOUT_SPLIT:
            rows.append(r)
        else:
            old.append(f.name)
    if not rows:
        return "(no results of the test-split protocol yet)" + (f"; old protocol: {old}" if old else "")
    lines = ["| campaign | budget (units) | evaluations | wall s | LLM calls | LLM valid / proposals "
             "| SGD-m score (search, small) | best score (search, small) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["campaign"]
        lv = f"{c['llm_valid']}/{c['llm_proposals']}" if c["llm_proposals"] else "-"
        lines.append(f"| {c['name'][6:]} | {c['budget_units']:g} | {c['evaluations']} | {c['wall_s']:.0f} | "
                     f"{c['llm_calls']} | {lv} | {c['seed_score_small']:+.3f} | {c['best_score_small']:+.3f} |")
    lines += ["", f"Held-out check ({HELDOUT_SPLIT} split, unseen training seeds "
              + ", ".join(map(str, HELDOUT_SEEDS)) + ", small fidelity; "
              "score = mean log(tuned AdamW loss / tuned rule loss): 0 = tuned AdamW, higher is better; "
              "char_lm was never seen by the search):", "",
              "| rule | " + " | ".join(HELDOUT_TASKS) + " | mean |", "|---" * (len(HELDOUT_TASKS) + 2) + "|"]
    done = set()
    for r in rows:
        for n, v in r["heldout"].items():
            if n.startswith("_") or n in done:
                continue
            done.add(n)
            cells = [f"{v['tasks'][t]['score']:+.3f}" if t in v["tasks"] and v["tasks"][t]["score"] > -1e8
                     else "failed" for t in HELDOUT_TASKS]
            lines.append(f"| {n} | " + " | ".join(cells) + f" | {v['score']:+.3f} |")
    lines += ["", "Same rules and seeds on the validation split (the search selected on val, seed 0):", "",
              "| rule | " + " | ".join(HELDOUT_TASKS) + " | mean (val) | mean (test) |",
              "|---" * (len(HELDOUT_TASKS) + 3) + "|"]
    done = set()
    for r in rows:
        for n, v in r.get("heldout_val", {}).items():
            if n.startswith("_") or n in done:
                continue
            done.add(n)
            cells = [f"{v['tasks'][t]['score']:+.3f}" if t in v["tasks"] and v["tasks"][t]["score"] > -1e8
                     else "failed" for t in HELDOUT_TASKS]
            test = r["heldout"][n]["score"]
            lines.append(f"| {n} | " + " | ".join(cells) + f" | {v['score']:+.3f} | {test:+.3f} |")
    if old:
        lines += ["", f"(not shown, older protocol without a test split: {', '.join(old)})"]
    return "\n".join(lines)


# -- the transfer protocol (random-only campaigns over several search seeds) -----------------

TRANSFER_CAMPAIGN = ROOT / "examples" / "discovery.toml"


TRANSFER_ARMS = ("random", "bandit_llm")


def add_bandit_llm(d: dict, algorithm: str = "ucb", llm_calls: int | None = None) -> dict:
    """Turn a random-only campaign dict into the bandit-with-LLM arm: the embedded LLM's operators
    under the operator bandit (default floors and ceilings, as shares of time), at most
    ``llm_calls`` LLM calls when given (then the random operators alone)."""
    d["llm"] = {}
    d.setdefault("operators", {})["bandit"] = {"algorithm": algorithm}
    if llm_calls is not None:
        d["budget"]["llm_calls"] = llm_calls
    return d


def transfer_stem(arm: str, search_seed: int | str, tag: str = "") -> str:
    """Name stem of an arm's run and result file (the random arm keeps its original names)."""
    return f"s{search_seed}{tag}" if arm == "random" else f"{arm}_s{search_seed}{tag}"


def transfer_campaign_dict(search_seed: int, budget: int | None, wall: float | None, tag: str = "",
                           arm: str = "random", llm_calls: int | None = None) -> dict:
    """examples/discovery.toml with its search seed (``random_seed``), budget and run name replaced;
    random operators alone, or (``arm="bandit_llm"``) with the LLM's operators under the UCB bandit."""
    d = tomllib.loads(TRANSFER_CAMPAIGN.read_text())
    d["name"] = f"bench_transfer_{transfer_stem(arm, search_seed, tag)}"
    d["random_seed"] = search_seed
    d.pop("llm", None)
    d.setdefault("operators", {})["llm_share"] = 0.0
    if arm == "bandit_llm":
        add_bandit_llm(d, llm_calls=llm_calls)
    # one result cache for every seed's run: the AdamW sweeps (and any rule two seeds both find) train once
    d.setdefault("evaluator", {})["cache_dir"] = str(ROOT / "runs" / "bench_discovery" / "transfer_cache")
    if budget is not None:
        d["budget"]["evaluations"] = budget
    if wall is not None:
        d["budget"]["wall_seconds"] = wall
    if wall is not None and wall < 1800:   # a budget-scaled run: scale the finalize stage with it
        d["simplify"]["max_evaluations"] = min(d["simplify"].get("max_evaluations", 30), 10)
        d["validation"]["top"] = min(d["validation"].get("top", 6), 4)
    return d


def run_transfer_seed(search_seed: int, budget: int | None, wall: float | None, out: Path, executor: str,
                      verify_top: int = 1, tag: str = "", arm: str = "random", llm_calls: int | None = None) -> dict:
    """One campaign (``arm``) of the transfer protocol, then ``optforge verify`` of its winner."""

    d = transfer_campaign_dict(search_seed, budget, wall, tag, arm, llm_calls)
    if executor:
        d["executor"] = executor
    c = parse_campaign(d, f"<bench {d['name']}>")
    load0 = os.getloadavg()
    t0 = time.time()
    s = run_campaign(c, out / d["name"], fresh=True, progress=PlainProgress(every_s=60))
    search_s = time.time() - t0
    # every seed is verified under the same config: one shared cache (the AdamW sweeps train once)
    rec = verify_run(out / d["name"], top=verify_top, executor=executor, with_seeds=search_seed == 0,
                     cache_dir=ROOT / "runs" / "discovery" / "eval_cache_verify")
    print("\n".join(verify_table(rec)), flush=True)
    return {"arm": arm, "search_seed": search_seed, "budget_units": s.used, "evaluations": s.evaluations,
            "llm_calls": s.llm_calls, "llm_calls_cap": d["budget"].get("llm_calls"),
            "search_wall_s": round(search_s, 1), "verify_s": rec["seconds"], "load_before": load0,
            "load_after": os.getloadavg(), "best_id": s.best_id, "verify": rec,
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def transfer_table(out: Path) -> str:
    """Markdown: per search seed the winner's search, validation and verified (transfer) scores, then the
    mean and spread over seeds of the verified score (families used neither in search nor validation)."""
    rows = [dict(json.loads(f.read_text()), arm=arm) for arm in TRANSFER_ARMS
            for f in sorted(out.glob(f"transfer_{transfer_stem(arm, '*')}.json"))]
    if not rows:
        return "(no transfer-protocol results yet: run --transfer)"
    tasks = rows[0]["verify"]["transfer_tasks"]
    lines = ["| arm | search seed | units | LLM calls | run s (search + finalize) | winner | search | validation | "
             "val tasks (test) | " + " | ".join(tasks) + " | **verified (transfer) mean** | won | load |",
             "|---" * (11 + len(tasks)) + "|"]
    by: dict[str, list[tuple[float, int, int, float]]] = {}
    for r in rows:
        e = next(x for x in r["verify"]["entries"] if x["kind"] == "candidate")
        cells = [f"{e['tasks'][t]['score']:+.3f}" if e["tasks"].get(t, {}).get("score") is not None else "failed"
                 for t in tasks]
        by.setdefault(r["arm"], []).append((e["verified"], e["verified_won"], e["verified_n"], r["budget_units"]))
        lines.append(f"| {r['arm']} | {r['search_seed']} | {r['budget_units']:g} | {r.get('llm_calls', 0)} | "
                     f"{r['search_wall_s']:.0f} | #{e['id']} | "
                     f"{e['search']:+.3f} | {e['validation']:+.3f} | {e['validation_test']:+.3f} | "
                     + " | ".join(cells) + f" | **{e['verified']:+.3f}** | {e['verified_won']}/{e['verified_n']} | "
                     f"{r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f} |")
    lines += ["", "| arm | seeds | verified mean | sd | min | max | tasks won | units trained (mean) |",
              "|---" * 8 + "|"]
    for arm, xs in by.items():
        ver = [x[0] for x in xs]
        sd = statistics.stdev(ver) if len(ver) > 1 else 0.0
        lines.append(f"| {arm} | {len(xs)} | **{statistics.mean(ver):+.3f}** | {sd:.3f} | {min(ver):+.3f} | "
                     f"{max(ver):+.3f} | {sum(x[1] for x in xs)}/{sum(x[2] for x in xs)} | "
                     f"{statistics.mean(x[3] for x in xs):.0f} |")
    lines += ["", "verified = mean over the transfer tasks of log(AdamW loss / rule loss), 0 = lr x wd tuned AdamW"]
    return "\n".join(lines)


def transfer_main(args) -> int:
    """``--transfer``: campaigns (``--transfer-arm``) of examples/discovery.toml over ``--transfer-seeds``."""
    out = Path(args.out)
    llm = args.transfer_arm == "bandit_llm"
    if llm:
        warm_llm()
    for seed in [int(x) for x in args.transfer_seeds.split(",")]:
        print(f"\n=== transfer protocol ({args.transfer_arm}): search seed {seed}, budget {args.budget} units ===",
              flush=True)
        r = run_transfer_seed(seed, args.budget, args.wall, out, args.executor, tag=args.tag, arm=args.transfer_arm,
                              llm_calls=args.llm_calls if llm else None)
        stem = transfer_stem(args.transfer_arm, seed, args.tag)
        (out / f"transfer_{stem}.json").write_text(json.dumps(r, indent=2, default=str))
    print(transfer_table(out))
    return 0


# -- random-only vs bandit-with-LLM at equal wall-clock (several search seeds) ------------

BANDIT_ARMS = ("random", "bandit_llm")


def bandit_campaign_dict(arm: str, search_seed: int, wall: float, executor: str, algorithm: str = "ucb") -> dict:
    """The campaign of one arm: the same search, stopped by the same wall-clock budget (the unit
    budget is out of reach); ``bandit_llm`` adds the embedded LLM's operators under the operator
    bandit (default floors, reward per second), ``random`` has the random operators alone."""
    d = campaign_dict(f"bench_{arm}_s{search_seed}", 100_000, wall, 0.0, executor)
    d["random_seed"] = search_seed
    d["search"]["patience"] = 200
    if arm == "bandit_llm":
        add_bandit_llm(d, algorithm)
    return d


def warm_llm() -> None:
    """Load (and on first use convert) the embedded model once, before any timing."""
    subprocess.run([sys.executable, "-m", "search.cli", "llm", "ping"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)


def run_bandit_arms(args) -> int:
    """``--bandit-vs-random``: for each search seed, the random-only campaign then the bandit-with-LLM
    one (interleaved, so load drifts hit both), each followed by the held-out test check."""

    out = Path(args.out)
    warm_llm()
    for seed in [int(x) for x in args.bandit_seeds.split(",")]:
        for arm in args.bandit_arms.split(","):
            load0 = os.getloadavg()
            print(f"\n=== {arm}, search seed {seed}, {args.bandit_wall:g} s of search ===", flush=True)
            d = bandit_campaign_dict(arm, seed, args.bandit_wall, args.executor, args.bandit_algorithm)
            r = run_search(d, out)
            st = RunStore(out / d["name"], readonly=True)
            try:
                ck = (st.last_checkpoint() or {}).get("state", {}).get("operators") or {}
                shares = {"first": ck.get("history", [[0, {}]])[0][1], "last": ck.get("history", [[0, {}]])[-1][1],
                          "arms": {k: {f: a[f] for f in ("children", "valid", "improved")}
                                   for k, a in ck.get("arms", {}).items()}}
            finally:
                st.close()
            h = heldout({f"best_{arm}_s{seed}": r["simplified"]}, args.executor)
            res = {"arm": arm, "search_seed": seed, "wall_cap_s": args.bandit_wall, "algorithm":
                   args.bandit_algorithm if arm == "bandit_llm" else "-",
                   "share_of": d["operators"].get("bandit", {}).get("share_of", "time") if arm == "bandit_llm" else "-",
                   "campaign": r, "heldout": h,
                   "operators": shares, "load_before": load0, "load_after": os.getloadavg(),
                   "machine": f"{os.cpu_count()}-core CPU container",
                   "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            (out / f"bandit_{arm}_s{seed}{args.tag}.json").write_text(json.dumps(res, indent=2, default=str))
            print(f"{arm} s{seed}: {r['budget_units']:g} units, held-out test {h[next(iter(h))]['score']:+.3f}",
                  flush=True)
    print(bandit_table(out))
    return 0


def bandit_table(out: Path) -> str:
    """Markdown: per arm and search seed, then mean and spread of the held-out test score."""
    rows = [json.loads(f.read_text()) for f in sorted(out.glob("bandit_*_s*.json"))]
    if not rows:
        return "(no --bandit-vs-random results yet)"
    lines = ["| arm | search seed | wall cap s | units | generations | LLM calls | LLM share first -> last "
             "| best (search, small) | held-out test (mean of 3 tasks) | load |", "|---" * 10 + "|"]
    by: dict[str, list[float]] = {}

    def variant(r: dict) -> str:   # results from before share_of existed had floors on the children
        if r["arm"] == "random":
            return "random"
        return f"{r['arm']} ({r['algorithm']}, shares of {r.get('share_of', 'children')})"
    for r in sorted(rows, key=lambda r: (variant(r), r["search_seed"])):
        c, h = r["campaign"], r["heldout"]
        score = next(v for k, v in h.items() if not k.startswith("_"))["score"]
        by.setdefault(variant(r), []).append(score)
        sh = r.get("operators") or {}
        llm = lambda d: sum(v for k, v in (d or {}).items() if k.startswith("llm_"))
        share = "-" if r["arm"] == "random" else \
            f"{100 * llm(sh.get('first')):.0f}% -> {100 * llm(sh.get('last')):.0f}%"
        lines.append(f"| {variant(r)} | {r['search_seed']} | {r['wall_cap_s']:g} | {c['budget_units']:g} | "
                     f"{c['generations']} | {c['llm_calls']} | {share} | {c['best_score_small']:+.3f} | "
                     f"{score:+.3f} | {r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f} |")
    lines.append("")
    for arm, xs in sorted(by.items()):
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        lines.append(f"{arm}: held-out test score over {len(xs)} run(s): mean {statistics.mean(xs):+.3f}, "
                     f"sd {sd:.3f}, min {min(xs):+.3f}, max {max(xs):+.3f}")
    return "\n".join(lines)


# -- the task-bank protocol: examples/discovery.toml, random vs bandit + LLM at equal wall-clock ----------

def bank_campaign_dict(arm: str, search_seed: int, wall: float, tag: str = "", llm_calls: int | None = None,
                       tuning: str | None = None, out: Path | None = None) -> dict:
    """examples/discovery.toml for one arm and search seed, stopped by ``wall`` seconds of search (the
    unit budget is out of reach); a short wall scales the finalize stage down with it. ``tuning``
    (an ``evaluators.TUNING_PRESETS`` name) replaces the file's lr x wd protocol, for every rule and
    AdamW alike. Each arm has its own result cache under ``out`` (default runs/bench_discovery), so
    neither reuses the other's work and a new ``--out`` is a fresh round that replays nothing."""
    d = transfer_campaign_dict(search_seed, 1_000_000, wall, tag, arm, llm_calls)
    d["name"] = f"bench_bank_{transfer_stem(arm, search_seed, tag)}"
    d["evaluator"]["cache_dir"] = str((out or ROOT / "runs" / "bench_discovery") / f"bank_cache_{arm}")
    if tuning is not None:
        d["evaluator"] = with_tuning_preset(d["evaluator"], tuning)
    if wall < 600:   # a smoke run: the cheaper default tuning and a finalize stage that fits next to it
        d["evaluator"] = with_tuning_preset(d["evaluator"], "budget")
        d["validation"].update(top=2, fidelity="tiny")
        d["simplify"].update(top=1, max_evaluations=4)
    return d


def bank_search(args, arm: str, seed: int) -> Path:
    """One arm's campaign for one search seed; writes ``bank_<stem>.json`` without verification yet."""
    out = Path(args.out)
    d = bank_campaign_dict(arm, seed, args.bank_wall, args.tag, args.llm_calls if arm != "random" else None,
                           args.tuning, out)
    d["executor"] = args.executor
    if args.workers:
        d["evaluator"]["workers"] = args.workers
    print(f"\n=== bank protocol: {arm}, search seed {seed}, {args.bank_wall:g} s of search ===", flush=True)
    load0, date0 = os.getloadavg(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.time()
    s = run_campaign(parse_campaign(d, f"<bench {d['name']}>"), out / d["name"], fresh=True,
                     progress=PlainProgress(every_s=60))
    st = RunStore(out / d["name"], readonly=True)
    try:
        bank, track = st.get_meta("bank"), st.get_meta("bank_track") or []
        warnings = [e["message"] for e in st.events("meta_overfitting")]
    finally:
        st.close()
    res = {"arm": arm, "search_seed": seed, "wall_cap_s": args.bank_wall, "budget_units": s.used,
           "generations": s.generations, "llm_calls": s.llm_calls, "run_s": round(time.time() - t0, 1),
           "tuning": args.tuning or "thorough", "best_id": s.best_id, "best_text": s.best_text, "run": d["name"],
           "bank": bank, "bank_track": track, "meta_overfitting": warnings, "started": date0,
           "load_before": load0, "load_after": os.getloadavg(),
           "machine": f"{os.cpu_count()}-core CPU container, torch {torch.__version__}",
           "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    path = out / f"bank_{transfer_stem(arm, seed, args.tag)}.json"
    path.write_text(json.dumps(res, indent=2, default=str))
    return path


def bank_verify(args, arm: str, seed: int) -> None:
    """``optforge verify`` of one arm's winner against tuned AdamW and each ``--vs`` rule (tuned the same
    way, with its own noise floors); the records go into the arm's result file."""
    out = Path(args.out)
    path = out / f"bank_{transfer_stem(arm, seed, args.tag)}.json"
    res = json.loads(path.read_text())
    run = out / res.get("run", f"bench_bank_{transfer_stem(arm, seed, args.tag)}")
    seeds = [int(x) for x in args.verify_seeds.split(",")] if args.verify_seeds else None
    skip = [x for x in (args.verify_skip or "").split(",") if x]
    tasks = None
    if skip:   # e.g. lm_l: a test-bank task too costly for this machine; the record says it was left out
        test = (res.get("bank") or {}).get("test") or []
        tasks = [t for t in test if t not in skip]
        res["verify_skipped"] = [t for t in test if t in skip]
    res["verify_validation"] = not args.verify_no_validation
    retuned = args.verify_tuning is not None and args.verify_tuning != res.get("tuning")
    # the campaign's own protocol: verify / verify_vs; another preset: verify_retuned[preset][baseline]
    into = res.setdefault("verify_retuned", {}).setdefault(args.verify_tuning, {}) if retuned else res
    t0, load0 = time.time(), os.getloadavg()
    for base in [None] + [b for b in (args.vs or "").split(",") if b]:
        rec = verify_run(run, top=1, tasks=tasks, executor=args.executor, with_seeds=False,
                         fidelity=args.verify_fidelity, cache_dir=args.verify_cache or out / "bank_cache_verify",
                         seeds=seeds,
                         noise_replicates=args.noise_replicates, baseline=base,
                         validation=not args.verify_no_validation, tuning=args.verify_tuning if retuned else None)
        print("\n".join(verify_table(rec)), flush=True)
        if retuned:
            into[base or "adamw"] = rec
        elif base is None:
            res["verify"] = rec
        else:
            res.setdefault("verify_vs", {})[base] = rec
    timing = {"verify_s": round(time.time() - t0, 1), "verify_load_before": load0,
              "verify_load_after": os.getloadavg()}
    if retuned:
        into["_timing"] = timing
    else:
        res.update(timing)
    path.write_text(json.dumps(res, indent=2, default=str))


def run_bank(args) -> int:
    """``--bank``: per search seed, each arm's campaign (``--phase search``), then ``optforge verify`` of
    its winner (``--phase verify``); ``--phase both`` (default) does one after the other."""
    arms = args.bank_arms.split(",")
    if "bandit_llm" in arms and args.phase != "verify":
        warm_llm()
    for seed in [int(x) for x in args.bank_seeds.split(",")]:
        for arm in arms:
            if args.phase in ("search", "both"):
                bank_search(args, arm, seed)
            if args.phase in ("verify", "both"):
                bank_verify(args, arm, seed)
    print(bank_table(Path(args.out)))
    return 0


def _verified_cell(rec: dict | None) -> tuple[str, str, str]:
    """(estimate [CI] (aggregate), verdict, tasks won) of a verify record's candidate, or dashes."""
    if not rec:
        return "-", "-", "-"
    e = next(x for x in rec["entries"] if x["kind"] == "candidate")
    est = e.get("estimate") or {}
    ci = est.get("ci") or e.get("ci")
    verified = est.get("score", e.get("verified"))
    text = "-" if verified is None else f"{verified:+.3f}"
    if ci:
        text += f" [{ci[0]:+.3f}, {ci[1]:+.3f}] ({est.get('aggregate', 'mean')})"
    return text, e.get("verdict", "-"), f"{e.get('verified_won', '-')}/{e.get('verified_n', '-')}"


def _verifications(r: dict) -> list[tuple[str, dict, dict]]:
    """(verify tuning, the AdamW record, {other baseline: record}) of a result: the campaign's own
    protocol first, then each preset it was re-tuned with (``--verify-tuning``)."""
    out = [(r.get("tuning", "thorough"), r["verify"], r.get("verify_vs", {}))] if r.get("verify") else []
    for name, recs in sorted((r.get("verify_retuned") or {}).items()):
        if recs.get("adamw"):
            out.append((name, recs["adamw"], {b: x for b, x in recs.items() if b not in ("adamw", "_timing")}))
    return out


def bank_table(out: Path) -> str:
    """Markdown: per arm and search seed, the winner's search / validation / verified scores, verified
    against tuned AdamW and against each other baseline it was verified against (e.g. tuned Muon); one
    row per verification protocol (the campaign's tuning, then each ``--verify-tuning`` preset)."""
    rows = [json.loads(f.read_text()) for f in sorted(out.glob("bank_*s*.json"))]
    rows = [r for r in rows if _verifications(r)]   # a finished search not yet verified has no row
    if not rows:
        return "(no verified --bank results yet)"
    others = sorted({b for r in rows for _, _, vs in _verifications(r) for b in vs})
    head = ["arm", "seed", "wall cap s", "tuning", "verify tuning", "units", "gens", "LLM calls", "winner", "search",
            "validation", "vs tuned AdamW (95% CI)", "verdict", "won"]
    for b in others:
        head += [f"vs tuned {b} (95% CI)", "verdict", "won"]
    head += ["meta-overfitting", "load", "started"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    fmt = lambda x: "-" if x is None else f"{x:+.3f}"  # noqa: E731
    for r in rows:
        for vt, main, vs in _verifications(r):
            e = next(x for x in main["entries"] if x["kind"] == "candidate")
            cells = [r["arm"], str(r["search_seed"]), f"{r['wall_cap_s']:g}", r.get("tuning", "thorough"), vt,
                     f"{r['budget_units']:g}", str(r["generations"]), str(r["llm_calls"]), f"#{e['id']}",
                     fmt(e.get("search")), fmt(e.get("validation")), *_verified_cell(main)]
            for b in others:
                cells += _verified_cell(vs.get(b))
            cells += [str(len(r["meta_overfitting"])), f"{r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f}",
                      r["started"]]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=800, help="evaluation units per campaign")
    ap.add_argument("--wall", type=float, default=900.0, help="wall-time cap of the random campaign (s)")
    ap.add_argument("--llm-share", type=float, default=0.25)
    ap.add_argument("--llm-calls", type=int, default=40, help="LLM call cap of the LLM campaign (then random ops)")
    ap.add_argument("--llm-wall", type=float, default=1050.0, help="wall-time cap of the LLM campaign (s)")
    ap.add_argument("--only", choices=["random", "llm"], default=None,
                    help="run one campaign (each writes result_<campaign>.json; run them as separate jobs)")
    ap.add_argument("--no-llm", action="store_true", help="same as --only random")
    ap.add_argument("--search-seeds", default="0", help="training seeds of the search, e.g. 0,3 (the held-out "
                    "check uses 1, 2)")
    ap.add_argument("--tag", default="", help="suffix of the result file and run names")
    ap.add_argument("--table", action="store_true", help="print the markdown tables of the saved results and exit")
    ap.add_argument("--executor", default="pool", choices=["pool", "inprocess"])
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_discovery"))
    ap.add_argument("--transfer", action="store_true", help="the transfer protocol: random-only campaigns of "
                    "examples/discovery.toml, one per --transfer-seeds, each verified on transfer tasks")
    ap.add_argument("--transfer-seeds", default="0,1,2", help="search seeds (campaign random_seed) of --transfer")
    ap.add_argument("--transfer-arm", default="random", choices=TRANSFER_ARMS, help="random operators alone, or "
                    "the LLM's operators under the UCB operator bandit (capped at --llm-calls calls)")
    ap.add_argument("--transfer-table", action="store_true", help="print the transfer-protocol table and exit")
    ap.add_argument("--bandit-vs-random", action="store_true", help="random-only vs bandit-with-LLM "
                    "(embedded model) at equal wall-clock, one pair per --bandit-seeds, held-out test check each")
    ap.add_argument("--bandit-seeds", default="0,1,2", help="search seeds (campaign random_seed) of --bandit-vs-random")
    ap.add_argument("--bandit-wall", type=float, default=120.0, help="search wall-clock per campaign (s)")
    ap.add_argument("--bandit-algorithm", default="ucb", choices=["ucb", "thompson"])
    ap.add_argument("--bandit-table", action="store_true", help="print the --bandit-vs-random table and exit")
    ap.add_argument("--bandit-arms", default=",".join(BANDIT_ARMS), help="which arms to run (default both)")
    ap.add_argument("--bank", action="store_true", help="the current protocol: examples/discovery.toml (task "
                    "bank, zoo seeds), random vs bandit + LLM at equal wall-clock, each winner verified")
    ap.add_argument("--bank-seeds", default="0,1,2", help="search seeds (campaign random_seed) of --bank")
    ap.add_argument("--bank-wall", type=float, default=3000.0, help="search wall-clock per --bank campaign (s)")
    ap.add_argument("--bank-arms", default=",".join(TRANSFER_ARMS), help="which arms --bank runs (default both)")
    ap.add_argument("--verify-fidelity", default=None, help="fidelity of --bank's verify (default the campaign's)")
    ap.add_argument("--verify-seeds", default=None, help="unseen training seeds of --bank's verify (default its own)")
    ap.add_argument("--noise-replicates", type=int, default=4, help="noise-floor replicates of --bank's verify")
    ap.add_argument("--bank-table", action="store_true", help="print the --bank table and exit")
    ap.add_argument("--phase", default="both", choices=["search", "verify", "both"],
                    help="--bank: run the searches, verify finished ones, or both (arms can search as parallel jobs)")
    ap.add_argument("--tuning", default=None, choices=sorted(TUNING_PRESETS),
                    help="--bank: lr x wd tuning preset for every rule and AdamW (default: the file's, thorough)")
    ap.add_argument("--vs", default="muon", help="--bank: also verify against these library rules (comma-separated)")
    ap.add_argument("--workers", type=int, default=None, help="--bank: evaluation workers per campaign")
    ap.add_argument("--verify-skip", default=None, help="--bank: test-bank tasks verify leaves out (e.g. lm_l, "
                    "too costly here); recorded in the result")
    ap.add_argument("--verify-tuning", default=None, choices=sorted(TUNING_PRESETS),
                    help="--bank: tune every rule in verify with this preset (default the campaign's, --tuning)")
    ap.add_argument("--verify-cache", type=Path, default=None, help="--bank: verify's result cache (default "
                    "<out>/bank_cache_verify; rounds on the same banks can share one: baselines and floors once)")
    ap.add_argument("--verify-no-validation", action="store_true", help="--bank: verify on the test bank only")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.bank_table:
        print(bank_table(out))
        return 0
    if args.bank:
        return run_bank(args)
    if args.table:
        print(_table(out))
        return 0
    if args.transfer_table:
        print(transfer_table(out))
        return 0
    if args.transfer:
        return transfer_main(args)
    if args.bandit_table:
        print(bandit_table(out))
        return 0
    if args.bandit_vs_random:
        return run_bandit_arms(args)


    plans = [("sgdm_random", 0.0), ("sgdm_llm", args.llm_share)]
    if args.no_llm or args.only == "random":
        plans = plans[:1]
    elif args.only == "llm":
        plans = plans[1:]
    for name, share in plans:
        load0 = os.getloadavg()
        print(f"\n=== campaign {name} (llm_share {share}, budget {args.budget} units) ===", flush=True)
        wall = args.wall if share == 0 else args.llm_wall
        seeds = [int(x) for x in args.search_seeds.split(",")]
        if set(seeds) & set(HELDOUT_SEEDS):
            ap.error(f"--search-seeds must not include the held-out seeds {HELDOUT_SEEDS}")
        name = name + args.tag
        r = run_search(campaign_dict(f"bench_{name}", args.budget, wall, share, args.executor,
                                     args.llm_calls, seeds), out)
        r["search_seeds"] = seeds
        print(f"best (simplified) of {name}:\n{r['simplified']}", flush=True)
        rules = {"sgd_momentum": dsl.get_rule("sgd_momentum").source(), "adamw": dsl.get_rule("adamw").source(),
                 f"best_{name}": r["simplified"]}
        print(f"\n=== held-out check ({HELDOUT_SPLIT} split, unseen seeds, + unseen task char_lm), small fidelity"
              " ===", flush=True)
        h = heldout(rules, args.executor)
        print("=== the same on the validation split (for comparison) ===", flush=True)
        hv = heldout(rules, args.executor, split="val")
        result = {"machine": f"{os.cpu_count()}-core CPU container ({platform.machine()}), torch "
                             f"{torch.__version__}", "load_before": load0, "load_after": os.getloadavg(),
                  "budget": args.budget, "wall_cap_s": wall, "llm_calls_cap": args.llm_calls if share else 0,
                  "search_tasks": SEARCH_TASKS, "heldout_tasks": HELDOUT_TASKS, "heldout_seeds": HELDOUT_SEEDS,
                  "heldout_split": HELDOUT_SPLIT, "lr_grid": LR_GRID, "campaign": r, "heldout": h,
                  "heldout_val": hv, "finished": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                         time.gmtime())}
        (out / f"result_{name}.json").write_text(json.dumps(result, indent=2, default=str))
    print()
    print(_table(out))
    print(f"\nresults: {out}/result_*.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
