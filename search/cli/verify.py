"""``optforge verify RUN [--top K] [--tasks a,b] [--seeds 5,6,7,8] [--baseline muon] [--tuning fine]
[--json]``: re-score a run's top rules on the test splits, with unseen seeds, on the validation tasks
and on transfer tasks the search never saw; print per task and the means with intervals, noise floors
and each rule's verdict (holds / indistinguishable from AdamW / worse), and store it in the run
(search.rules.verify)."""
from __future__ import annotations

import argparse
import json
import sys

import proxies
from evaluators import TUNING_PRESETS
from search.rules import VerifyError, verdict, verify_json, verify_run, verify_table

from .errors import CLIError
from .results import resolve_run


def _csv(s: str | None, cast=str) -> list | None:
    if s is None:
        return None
    try:
        return [cast(x.strip()) for x in s.split(",") if x.strip()]
    except ValueError:
        raise CLIError(f"cannot read {s!r}: give a comma-separated list") from None


def cmd_verify(args: argparse.Namespace) -> int:
    run = resolve_run(args.run)
    if args.noise_replicates < 1:
        raise CLIError(f"--noise-replicates {args.noise_replicates}: a verdict needs noise floors; give 1 or more")
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    tasks = None if args.tasks is None else proxies.split_task_list(args.tasks)   # bank specs hold commas
    try:
        rec = verify_run(run, top=args.top, tasks=tasks, seeds=_csv(args.seeds, int),
                         fidelity=args.fidelity, executor=args.executor, noise_replicates=args.noise_replicates,
                         baseline=args.baseline, validation=not args.no_validation, tuning=args.tuning,
                         log=log)
    except (VerifyError, ValueError, KeyError) as e:
        raise CLIError(str(e).strip("'\"")) from None
    if args.json:
        print(json.dumps(verify_json(rec), indent=2))
        return 0
    print("\n".join(verify_table(rec)))
    print(verdict(rec))
    print(f"stored in {run} (optforge show / report display it); {rec['seconds']:.0f} s")
    return 0


def register(sub) -> None:
    p = sub.add_parser("verify", help="re-score the top rules on test splits, unseen seeds, validation and "
                       "transfer tasks; store and print the transfer gap")
    p.add_argument("run", help="run directory (e.g. runs/demo) or campaign name")
    p.add_argument("--top", type=int, default=None, help="how many of the final ranking (default [verify] top)")
    p.add_argument("--tasks", default=None, help="transfer tasks, comma-separated (default: [verify] tasks, else "
                   "proxies.TASK_GROUPS['transfer'] minus families used by the run)")
    p.add_argument("--seeds", default=None, help="training seeds (default: four the search never used)")
    p.add_argument("--noise-replicates", type=int, default=4, metavar="K",
                   help="noise floors from K pairs of disjoint seed sets of tuned AdamW vs itself (default 4)")
    p.add_argument("--json", action="store_true", help="print one JSON object: the top rule's score, ci, "
                   "p_improvement, verdict and tasks (score / ci / noise), plus all entries")
    p.add_argument("--baseline", default=None, metavar="RULE",
                   help="verify against this library rule (e.g. muon), tuned the same way, instead of the "
                   "campaign's baseline; stored beside the main verification")
    p.add_argument("--no-validation", action="store_true", help="skip the validation tasks' test split (about "
                   "half the cost); the verdict is on the transfer tasks either way")
    p.add_argument("--fidelity", default=None, help="default: the validation (else highest search) fidelity")
    p.add_argument("--tuning", default=None, choices=sorted(TUNING_PRESETS),
                   help="tune every rule and the baseline with this preset instead of the campaign's protocol "
                   "(e.g. fine: half-decade lr steps where the search used decades)")
    p.add_argument("--executor", default=None, choices=["inprocess", "pool", "ray"])
    p.set_defaults(func=cmd_verify)
