"""``optforge run CAMPAIGN.toml [--resume | --fresh]``: run a campaign from the shell.

Runs into ``runs/<name>/`` (or the campaign's ``run_dir`` / ``--run-dir``), with ``events.jsonl`` and
``hall_of_fame.csv`` beside the store (and TensorBoard files with ``--tensorboard``; search.core.events).
An existing run is never overwritten silently: ``--resume`` continues it to the same budget, ``--fresh`` deletes it
first. Then ``optforge show | export | report`` read the run (search.cli.results).
"""
from __future__ import annotations

import argparse

from search.core import CampaignError, Engine, InvalidCandidate, RunExistsError, StoreError, load_campaign
from search.report import make_progress

from .errors import CLIError
from .results import fmt_score

# -- run ----------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    try:
        campaign = load_campaign(args.campaign)
        if args.budget is not None:
            campaign.budget.evaluations = args.budget
        if args.tensorboard is not None:
            campaign.logging.tensorboard = True
            if args.tensorboard:
                campaign.logging.tensorboard_dir = args.tensorboard
        eng = Engine(campaign, args.run_dir, resume=args.resume, fresh=args.fresh,
                     progress=make_progress("plain" if args.plain else "auto"))
    except (CampaignError, RunExistsError, StoreError, ValueError) as e:
        raise CLIError(str(e)) from None
    try:
        summary = eng.run()
    except InvalidCandidate as e:
        raise CLIError(str(e)) from None
    finally:
        eng.close()
    print(f"run finished: {summary.done_reason}; {summary.used:g} budget units, {summary.evaluations} "
          f"evaluations, {summary.wall_seconds:.0f} s; best {fmt_score(summary.best_score)} "
          f"(#{summary.best_id} at {summary.best_fidelity}); see: optforge show {summary.run_dir}")
    if eng.progress is not None and getattr(eng.progress, "tb_dir", None) is not None:
        print(f"TensorBoard: tensorboard --logdir {eng.progress.tb_dir}")
    return 0



def register(sub) -> None:
    p = sub.add_parser("run", help="run a campaign (TOML)")
    p.add_argument("campaign", help="campaign file, e.g. examples/demo.toml")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue an existing run to the same budget")
    g.add_argument("--fresh", action="store_true", help="delete an existing run of this campaign first")
    p.add_argument("--run-dir", default=None, help="where to write (default: the campaign's run_dir or runs/<name>)")
    p.add_argument("--budget", type=int, default=None, help="override budget.evaluations")
    p.add_argument("--plain", action="store_true", help="plain log lines instead of the live view")
    p.add_argument("--tensorboard", nargs="?", const="", default=None, metavar="DIR",
                   help="write TensorBoard event files (default DIR: <run>/tensorboard); as [logging] tensorboard")
    p.set_defaults(func=cmd_run)
