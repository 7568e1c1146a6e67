"""The report's transfer section: search, validation and verified scores side by side (the transfer
gap, search.core.selection and ``optforge verify``), with the winners that do not hold flagged."""
from __future__ import annotations

import html
from typing import Any

from evaluators import Estimate, StatsError, describe
from search.core import RunView, fmt_score, fmt_won


def _f(x: float | None) -> str:
    """A score cell ("-" for none)."""
    return fmt_score(x, "-")


def _ci(ci: Any) -> str:
    """`` [lo, hi]`` of a stored interval, or "" (runs verified before intervals were stored)."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or None in ci:
        return ""
    return f" <span class='ci'>[{ci[0]:+.3f}, {ci[1]:+.3f}]</span>"


def verdict_text(entry: dict[str, Any]) -> str:
    """The entry's verdict in evaluators.stats' one wording: as verify stored it (``describe``), else
    ``describe`` of its stored estimate, else "-" (verified before verdicts were stored)."""
    if entry.get("describe"):
        return str(entry["describe"])
    est = entry.get("estimate")
    if not est:
        return "-"
    try:
        return describe(Estimate.from_json(est))
    except (StatsError, KeyError, TypeError, ValueError):
        return "-"


def transfer_sections(view: RunView) -> list[str]:
    """HTML sections: the validated candidates, and the stored verification (if any)."""
    out = []
    ranked = view.ranked()
    val = [x for x in ranked if x.get("validation") is not None]
    if val:
        rows = []
        for x in val:
            v = x["validation"]
            per = "<br>".join(f"{html.escape(t)}: {_f(tr.score if tr.status.value == 'ok' else None)}"
                              for t, tr in v.tasks.items())
            rows.append(f"<tr><td>#{x['id']}</td><td>{_f(x['score'])}</td><td>{_f(v.score)}</td>"
                        f"<td>{v.tasks_won}/{v.tasks_scored}</td><td>{per}</td></tr>")
        out.append("<h2>Validation stage (tasks the search never trained on)</h2><table><tr><th>id</th>"
                   "<th>search score</th><th>validation score</th><th>tasks won</th><th>per task</th></tr>"
                   + "".join(rows) + "</table>")
    rec = view.verification()
    if rec:
        head = ("<tr><th>rule</th><th>search</th><th>won</th><th>validation</th><th>won</th><th>validation tasks "
                "(test split)</th><th>won</th><th>verified (transfer) [interval]</th><th>won</th><th>holds?</th>"
                "<th>verdict</th></tr>")
        rows = []
        for e in rec["entries"]:
            flag = "" if e["kind"] == "seed" else ("yes" if e.get("holds") else
                                                    "<b style='color:#b00'>NO: does not hold</b>")
            rows.append(f"<tr><td>{html.escape(e['label'])}</td><td>{_f(e.get('search'))}</td>"
                        f"<td>{fmt_won(e, 'search')}</td><td>{_f(e.get('validation'))}</td>"
                        f"<td>{fmt_won(e, 'validation')}</td><td>{_f(e.get('validation_test'))}</td>"
                        f"<td>{fmt_won(e, 'validation_test')}</td>"
                        f"<td><b>{_f(e.get('verified'))}</b>{_ci(e.get('ci'))}</td>"
                        f"<td>{fmt_won(e, 'verified')}</td><td>{flag}</td>"
                        f"<td class='verdict'>{html.escape(verdict_text(e))}</td></tr>")
        tasks = list(rec["entries"][0]["tasks"]) if rec["entries"] else []
        per = ["<tr><th>rule</th>" + "".join(f"<th>{html.escape(t)}</th>" for t in tasks) + "</tr>"]
        for e in rec["entries"]:
            cells = []
            for t in tasks:
                c = e["tasks"].get(t, {})
                tuned = (f"<br><small>lr {c['lr']:.2g} wd {c['wd']:.2g} vs AdamW lr {c['baseline_lr']:.2g} wd "
                         f"{c['baseline_wd']:.2g}</small>" if c.get("lr") and c.get("wd") is not None
                         and c.get("baseline_lr") and c.get("baseline_wd") is not None else "")
                noise = c.get("noise")
                floor = f"<br><small>noise floor {noise:.3f}</small>" if isinstance(noise, (int, float)) else ""
                failed = (f"<span class='failed'>failed: {html.escape(c.get('reason') or c['status'])}</span>"
                          if c.get("status") not in (None, "ok") else "")
                cells.append(f"<td>{failed or _f(c.get('score'))}{_ci(c.get('ci'))}{tuned}{floor}</td>")
            per.append(f"<tr><td>{html.escape(e['label'])}</td>" + "".join(cells) + "</tr>")
        out.append(
            "<h2>Transfer gap: search, validation and verified scores</h2>"
            f"<p>Verified on the test splits with unseen training seeds {rec['seeds']} at {rec['fidelity']}; "
            f"validation tasks {html.escape(', '.join(rec['validation_tasks']) or '-')}; transfer tasks (used "
            f"neither by the search nor the validation) {html.escape(', '.join(rec['transfer_tasks']) or '-')}. "
            "A winner holds when the whole interval of its verified score (bootstrap over tasks, then seeds) "
            "lies above 0 and it wins more than half the tasks beyond their noise floor (tuned AdamW against "
            "itself on other seeds); it is worse when the whole interval lies below 0. Runs verified before "
            "intervals were stored show \"-\" for the verdict; there, holds means a verified mean above 0 "
            "and most transfer tasks won.</p>"
            f"<table>{head}{''.join(rows)}</table><h3>Per task (tuned lr / wd)</h3><table>{''.join(per)}</table>")
    others = view.verifications_vs()   # optforge verify --baseline RULE
    if others:
        items = "".join(f"<li>against tuned {html.escape(b)} (seeds {o['seeds']}, transfer tasks "
                        f"{html.escape(', '.join(o['transfer_tasks']) or '-')}): {html.escape(e['label'])} "
                        f"<span class='verdict'>{html.escape(verdict_text(e))}</span></li>"
                        for b, o in others.items() for e in o["entries"][:1])
        out.append(f"<h3>Against other baselines, tuned the same way</h3><ul>{items}</ul>")
    return out
