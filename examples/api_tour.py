"""A tour of the Python API (search.api): run a small campaign, then read it as tables.

    python examples/api_tour.py            # about half a minute on 2 CPU cores; writes runs/api_tour/

Each step is a cell's worth of code in a notebook (docs/api.md describes every call).
"""
from __future__ import annotations

import pandas as pd

import search.api as of

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 12)

# 1. A campaign from a dict (the TOML file's content): SGD with momentum and AdamW as seeds, searched
#    on the quadratic, validated on Rosenbrock, two training seeds so every score gets an interval.
campaign = of.campaign({
    "name": "api_tour",
    "seed_rules": ["sgd_momentum", "adamw"],
    "search_tasks": ["quadratic"],
    "validation_tasks": ["rosenbrock"],
    "fidelities": ["tiny", "small"],
    "eval_seeds": [0, 1],
    "lrs": [0.003, 0.03, 0.3],
    "executor": "inprocess",
    "budget": {"evaluations": 16},
    "search": {"population": 6, "tournament": 2, "batch_size": 2},
    "simplify": {"enabled": False},
    "validation": {"top": 2},
})

# 2. Run it (a progress bar over the budget); fresh=True starts over if runs/api_tour exists.
run = of.run(campaign, fresh=True)
print(run.summary.done_reason, "- best", run.summary.best_id, f"{run.summary.best_score:+.4f}")

# 3. The ranked candidates with their 95% intervals, and the scores per task.
cols = ["rank", "id", "operator", "fidelity", "score", "ci_low", "ci_high", "validation", "validation_failure",
        "size"]
print(run.candidates(text=False)[cols].head(8).to_string(index=False))
print(run.task_scores(top=3).to_string(index=False))

# 4. What the operators did, and the run's event log.
print(run.operators().to_string(index=False))
print(run.events()["event"].value_counts().to_string())

# 5. The hall of fame the run kept up to date as it went (hall_of_fame.csv in the run directory).
print(run.hall_of_fame()[["rank", "id", "score", "interval", "fidelity"]].head(5).to_string(index=False))

# 6. Export the winner as a standalone torch optimizer, and say what to know about it.
path = run.export(run.run_dir / "best_rule.py")
print("wrote", path, *(f"\n  warning: {w}" for w in run.last_export_warnings))

# 7. Open the same run later (or while another process runs it) by its directory.
again = of.open_run("runs/api_tour")
print(len(again.evaluations()), "evaluations;", "verified" if not again.verify().empty else
      "not verified yet (optforge verify runs/api_tour)")
