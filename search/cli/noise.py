"""``optforge noise --tasks a,b --fidelity F [--seeds N] [--json]``: each task's noise floor.

The noise floor is how far tuned AdamW scores from *itself* by chance: K pairs of disjoint sets of N
fresh seeds (different init and data order), each set tuned on its own under the same protocol,
split and fidelity as a real evaluation (evaluators.noise). A rule's task score below it is not a
win. Floors are cached (``--cache``, default ``$OPTFORGE_CACHE`` or ~/.cache/optforge/eval_cache.sqlite),
so the second call is instant. A task whose floor exceeds 0.05 (a 5% loss difference, about the
effects that matter) is flagged: verdicts on it need more seeds or a higher fidelity.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time

from pydantic import ValidationError

import proxies
from evaluators import (
    NOISY_ABOVE,
    EvalCache,
    NoiseError,
    RuleEvalConfig,
    RuleEvaluator,
    default_cache_path,
    noise_floors,
)

from .errors import CLIError
from .eval import PROTOCOLS, protocol_text


def cmd_noise(args: argparse.Namespace) -> int:
    tasks = proxies.split_task_list(args.tasks or "")
    if not tasks:
        raise CLIError("--tasks: give at least one task, e.g. --tasks digits_cnn,text_rnn "
                       f"(known: {', '.join(proxies.list_tasks())})")
    if args.fidelity not in proxies.FIDELITIES:
        raise CLIError(f"--fidelity {args.fidelity!r}: choose one of {', '.join(proxies.FIDELITIES)}")
    if args.seeds < 1 or args.replicates < 1:
        raise CLIError(f"--seeds {args.seeds} / --replicates {args.replicates}: both must be at least 1")
    d = {**copy.deepcopy(PROTOCOLS[args.protocol]), "tasks": tasks, "executor": args.executor,
         "seeds": list(range(args.seeds)), "split": args.split}
    if args.workers:
        d["workers"] = args.workers
    try:
        cfg = RuleEvalConfig(**d)
    except ValidationError as e:
        raise CLIError("; ".join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}"
                                 for err in e.errors())) from None
    cache = EvalCache(args.cache or default_cache_path())
    print(f"noise floors of {', '.join(tasks)} at {args.fidelity}: tuned adamw vs itself, {args.replicates} pairs of "
          f"disjoint sets of {args.seeds} seeds; {protocol_text(args.protocol, cfg).split(', seeds')[0]}; "
          f"cache {cache.path}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        with RuleEvaluator(cfg, cache=cache) as ev:
            floors = noise_floors(ev, args.fidelity, tasks, replicates=args.replicates)
    except NoiseError as e:
        raise CLIError(str(e)) from None
    finally:
        cache.close()
    if args.json:
        print(json.dumps({"fidelity": args.fidelity, "protocol": args.protocol, "n_seeds": args.seeds,
                          "replicates": args.replicates, "split": args.split, "noisy_above": NOISY_ABOVE,
                          "tasks": {t: f.to_json() for t, f in floors.items()}}, indent=2))
        return 0
    print(f"{'task':<16} {'floor':>7} {'per-seed sd':>11}  null scores (AdamW vs AdamW, {args.seeds} seeds each)")
    for t, f in floors.items():
        flag = f"  NOISY: above {NOISY_ABOVE} - use more seeds or a higher fidelity" if f.noisy else ""
        print(f"{t:<16} {f.floor:>7.3f} {f.per_seed_sd:>11.3f}  "
              + " ".join(f"{z:+.3f}" for z in f.replicates) + flag)
    print(f"a task score counts as a win only above its floor; {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("noise", help="each task's noise floor: tuned AdamW against itself on disjoint seeds",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", required=True, help="comma-separated proxy tasks")
    p.add_argument("--fidelity", default="small", help="tiny, small or full (default: small)")
    p.add_argument("--seeds", type=int, default=4, help="seeds per set, as many as the scores it is a floor for "
                   "(default 4)")
    p.add_argument("--replicates", type=int, default=4, help="pairs of disjoint seed sets (default 4)")
    p.add_argument("--protocol", choices=list(PROTOCOLS), default="campaign-default",
                   help="tuning protocol (default campaign-default, as verify scores)")
    p.add_argument("--split", choices=["val", "test"], default="test", help="held-out split (default test)")
    p.add_argument("--executor", choices=["inprocess", "pool", "ray"], default="pool")
    p.add_argument("--workers", type=int, help="pool size")
    p.add_argument("--cache", metavar="FILE", help="result cache (default $OPTFORGE_CACHE or "
                   "~/.cache/optforge/eval_cache.sqlite)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_noise)
