"""``optforge show`` lines for the validation stage and ``optforge verify``: search, validation and
verified scores side by side (the transfer gap), with a flag on a winner that does not hold."""
from __future__ import annotations

from search.core import RunView, fmt_score
from search.rules.verify import verdict, verify_table


def validation_lines(row: dict) -> list[str]:
    """One candidate's validation score (tasks won, per task), if it was validated."""
    v = row.get("validation")
    if v is None:
        return []
    per = ", ".join(f"{t} {fmt_score(tr.score if tr.status.value == 'ok' else None, '-')}"
                    for t, tr in v.tasks.items())
    score = fmt_score(v.score if v.status.value == "ok" else None, "-")
    return [f"    validation {score} ({v.tasks_won}/{v.tasks_scored} tasks won vs tuned AdamW): {per}"]


def verification_lines(view: RunView) -> list[str]:
    """The stored ``optforge verify`` table (or how to make one), then each ``--baseline`` verdict."""
    rec = view.verification()
    out: list[str] = []
    if rec is not None:
        out = ["", "search -> validation -> verified (the transfer gap):"] + verify_table(rec) + [verdict(rec)]
    elif view.kind == "rule" and view.status == "done":
        out = ["", f"not verified yet: optforge verify {view.run_dir}  (test splits, unseen seeds, "
               "transfer tasks)"]
    for base, other in view.verifications_vs().items():   # optforge verify --baseline RULE
        out += [f"against tuned {base} (seeds {other['seeds']}, {len(other['transfer_tasks'])} transfer tasks): "
                + verdict(other)]
    return out
