"""The report's transfer section: search, validation and verified scores side by side (the transfer
gap, search.core.selection and ``optforge verify``), with the winners that do not hold flagged."""
from __future__ import annotations

import html

from search.core import RunView, fmt_score, fmt_won


def _f(x: float | None) -> str:
    """A score cell ("-" for none)."""
    return fmt_score(x, "-")


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
                "(test split)</th><th>won</th><th>verified (transfer)</th><th>won</th><th>holds?</th></tr>")
        rows = []
        for e in rec["entries"]:
            flag = "" if e["kind"] == "seed" else ("yes" if e.get("holds") else
                                                    "<b style='color:#b00'>NO: does not hold</b>")
            rows.append(f"<tr><td>{html.escape(e['label'])}</td><td>{_f(e.get('search'))}</td>"
                        f"<td>{fmt_won(e, 'search')}</td><td>{_f(e.get('validation'))}</td>"
                        f"<td>{fmt_won(e, 'validation')}</td><td>{_f(e.get('validation_test'))}</td>"
                        f"<td>{fmt_won(e, 'validation_test')}</td><td><b>{_f(e.get('verified'))}</b></td>"
                        f"<td>{fmt_won(e, 'verified')}</td><td>{flag}</td></tr>")
        tasks = list(rec["entries"][0]["tasks"]) if rec["entries"] else []
        per = ["<tr><th>rule</th>" + "".join(f"<th>{html.escape(t)}</th>" for t in tasks) + "</tr>"]
        for e in rec["entries"]:
            cells = []
            for t in tasks:
                c = e["tasks"].get(t, {})
                tuned = (f"<br><small>lr {c['lr']:.2g} wd {c['wd']:.2g} vs AdamW lr {c['baseline_lr']:.2g} wd "
                         f"{c['baseline_wd']:.2g}</small>" if c.get("lr") and c.get("wd") is not None
                         and c.get("baseline_lr") and c.get("baseline_wd") is not None else "")
                cells.append(f"<td>{_f(c.get('score'))}{tuned}</td>")
            per.append(f"<tr><td>{html.escape(e['label'])}</td>" + "".join(cells) + "</tr>")
        out.append(
            "<h2>Transfer gap: search, validation and verified scores</h2>"
            f"<p>Verified on the test splits with unseen training seeds {rec['seeds']} at {rec['fidelity']}; "
            f"validation tasks {html.escape(', '.join(rec['validation_tasks']) or '-')}; transfer tasks (used "
            f"neither by the search nor the validation) {html.escape(', '.join(rec['transfer_tasks']) or '-')}. "
            "A winner holds when its verified mean beats tuned AdamW and it wins most transfer tasks.</p>"
            f"<table>{head}{''.join(rows)}</table><h3>Per task (tuned lr / wd)</h3><table>{''.join(per)}</table>")
    return out
