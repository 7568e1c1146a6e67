"""``optforge report RUN``: one HTML file with interactive plots that opens without a network.

Sections: summary (with the chosen winner and, once verified, the verdict); every search
evaluation's score over the run with the winner marked; score distribution; Pareto front (score
vs program size, colour = state tensors); loss curves of the top rules vs tuned AdamW per task
(``TaskResult.curve`` and ``extra['baseline_curve']``); per-generation statistics; the top
candidates with intervals and their simplified source (or why they failed); validation and
verification (search.report.transfer); the lineage of the best; one operator table
(search.report.operators); failures by reason (search.report.failures). Every kind gets these
and adds its own HTML through ``KindPlugin.report_sections(view)``.

plotly.js is embedded in the page (``plotly_js="inline"``, ~4.6 MB) or written next to it as
``plotly.min.js`` (``"file"``: smaller reports, one copy per folder).
"""
from __future__ import annotations

import html
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from deap import tools

from evaluators import WORST_SCORE, EvalResult, StatsError, estimate_results
from search.core import KindPlugin, RunView, fmt_score, run_kind

from .failures import failure_sections
from .figures import (
    Hover,
    curves_figure,
    distribution_figure,
    failure_text,
    ok_score,
    pareto_figure,
    progress_figure,
    simplified_text,
    to_div,
)
from .figures import plotly_js as plotly_js_source
from .operators import operator_sections
from .transfer import transfer_sections, verdict_text

#: The file ``plotly_js="file"`` writes next to the report.
PLOTLY_FILE = "plotly.min.js"


def logbook_table(view: RunView) -> str | None:
    """Per-generation statistics of the screening scores (DEAP's Statistics and Logbook)."""
    if not view.fidelities:
        return None
    screen = view.fidelities[0]
    by_gen: dict[int, list[float]] = {}
    for e in view.evaluations:
        c = view.by_id.get(e["candidate_id"])
        if c is None or e["phase"] != "search" or e["fidelity"] != screen or not ok_score(e["score"]):
            continue
        by_gen.setdefault(int(c["generation"]), []).append(float(e["score"]))
    if not by_gen:
        return None
    stats = tools.Statistics()
    for name, fn in (("max", np.max), ("mean", np.mean), ("min", np.min)):
        stats.register(name, fn)
    book = tools.Logbook()
    best = -math.inf
    gens = sorted(by_gen)
    step = max(1, len(gens) // 25)  # at most ~25 rows
    for k, g in enumerate(gens):
        best = max(best, max(by_gen[g]))
        if k % step == 0 or k == len(gens) - 1:
            book.record(gen=g, n=len(by_gen[g]), best_so_far=best, **stats.compile(by_gen[g]))
    rows = [[r["gen"], r["n"], f"{r['max']:+.4f}", f"{r['mean']:+.4f}", f"{r['min']:+.4f}", f"{r['best_so_far']:+.4f}"]
            for r in book]
    return _table(rows, ["generation", f"ok at {screen}", "max", "mean", "min", "best so far"])


def _table(rows: list[list[Any]], head: list[str], attrs: str = "") -> str:
    h = "".join(f"<th>{html.escape(str(x))}</th>" for x in head)
    b = "".join("<tr>" + "".join(f"<td>{x}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table{attrs}>{f'<tr>{h}</tr>' if any(head) else ''}{b}</table>"


def _fmt(r: EvalResult | None, score: float | None = None) -> str:
    """A score cell: the score, or why it failed (escaped HTML)."""
    if r is not None and (not r.ok or not ok_score(r.score)):
        return f"<span class='failed'>failed: {html.escape(failure_text(r))}</span>"
    s = r.score if r is not None else score
    return "-" if s is None or not ok_score(s) else f"{s:+.4f}"


def _clip(campaign: dict) -> float:
    """The per-task clip the run's scores used (``task_clip``, else ``score_clip``; 5 by default)."""
    ev = campaign.get("evaluator") or {}
    clip = float(ev.get("score_clip") or 5.0)
    return min(clip, float(ev["task_clip"])) if ev.get("task_clip") else clip


def search_interval(r: EvalResult, clip: float, level: float = 0.95) -> str:
    """`` [lo, hi]``: the bootstrap interval (tasks, then seeds; evaluators.stats) of a result's
    score from its paired per-seed metrics, or "" where there is none (one task x one seed, a
    result from before per-seed metrics, a failed task)."""
    tasks = {t: tr for t, tr in r.tasks.items() if tr.status.value == "ok"}
    if not r.ok or not tasks or len(tasks) != len(r.tasks):
        return ""
    try:
        e = estimate_results(tasks, clip=clip, level=level, n_boot=2000)
    except StatsError:
        return ""
    if e.n_tasks * e.n_seeds < 2:
        return ""
    return f" <span class='ci'>[{e.ci[0]:+.3f}, {e.ci[1]:+.3f}]</span>"


def _summary(view: RunView, winner: dict | None) -> str:
    c = view.campaign
    used = sum(e["cost"] for e in view.evaluations)
    states = Counter(x["state"] for x in view.all)
    rows = [["kind", view.kind], ["status", view.status],
            ["budget used", f"{used:g} / {c.get('budget', {}).get('evaluations')} units"],
            ["evaluations (search / simplify)",
             f"{sum(e['phase'] == 'search' for e in view.evaluations)} / "
             f"{sum(e['phase'] == 'simplify' for e in view.evaluations)}"],
            ["candidates (ok / invalid / duplicate / simplify)",
             f"{states['ok']} / {states['invalid']} / {states['duplicate']} / {states['simplify']}"],
            ["LLM calls", len(view.store.llm_calls())],
            ["fidelities", html.escape(", ".join(view.fidelities))],
            ["wall time", f"{view.store.get_meta('wall', 0.0):.0f} s"],
            ["seed rules", html.escape(", ".join(c.get("seed_rules", [])))]]
    if winner is not None:
        rows.append(["chosen winner", f"#{winner['id']} ({html.escape(winner['operator'])}), "
                     f"{_fmt(winner['results'].get(view.fidelities[winner['level']]))} at "
                     f"{html.escape(view.fidelities[winner['level']])}"])
    rec = view.verification()
    entry = next((e for e in (rec or {}).get("entries", []) if e.get("kind") == "candidate"), None)
    if entry is not None:
        verdict = verdict_text(entry)
        if verdict == "-":   # verified before intervals were stored
            rows.append(["verified", f"{html.escape(entry['label'])} {fmt_score(entry.get('verified'), '-')} "
                         f"({'holds' if entry.get('holds') else 'does not hold'}); verdict <span class='verdict'>-"
                         "</span>: no interval stored (verify again to get one)"])
        else:
            rows.append(["verified", f"{html.escape(entry['label'])}: <span class='verdict'>"
                         f"{html.escape(verdict)}</span>"])
    elif view.kind == "rule":
        rows.append(["verified", "not yet (<code>optforge verify RUN</code> re-scores the top rules on unseen "
                     "tasks and seeds)"])
    return _table(rows, ["", ""], " id='summary'")


def _top(view: RunView, kind: KindPlugin, ranked: list[dict], top_n: int) -> str:
    clip = _clip(view.campaign)
    rows = []
    for rank, x in enumerate(ranked[:top_n], 1):
        fid = view.fidelities[x["level"]]
        r = x["results"][fid]
        per = "<br>".join(f"{html.escape(t)}: " + (f"{tr.score:+.4f}" if tr.status.value == "ok" else
                                                   f"<span class='failed'>{tr.status.value}: "
                                                   f"{html.escape(tr.reason or 'no reason recorded')}</span>")
                          for t, tr in r.tasks.items())
        rows.append([rank, f"#{x['id']}", fid, _fmt(r) + search_interval(r, clip), html.escape(x["operator"]), per,
                     f"<pre>{html.escape(simplified_text(kind, x))}</pre>"])
    return ("<h2>Top candidates</h2><p>Search scores with their 95% bootstrap interval over tasks and seeds "
            "where there is more than one of them; these rules were selected on these scores, so the "
            "intervals are optimistic: the verified ones (below, once verified) are the ones to quote.</p>"
            + _table(rows, ["rank", "id", "fidelity", "score [95% CI]", "operator", "per task", "simplified"],
                     " id='top'"))


def build_html(view: RunView, top_n: int = 5, plotly_js: str = "inline") -> str:
    """The report page; the run's kind (``run_kind``) names the score and adds its own sections.
    ``plotly_js``: "inline" (embedded) or "file" (``plotly.min.js`` next to the page)."""
    if plotly_js not in ("inline", "file"):
        raise ValueError(f"plotly_js must be 'inline' or 'file', got {plotly_js!r}")
    kind = run_kind(view)
    ranked = view.ranked()
    winner = ranked[0] if ranked else None
    hover = Hover(view, kind)
    sections = [f"<h1>optforge run: {html.escape(str(view.campaign.get('name', '?')))}</h1>", _summary(view, winner)]
    label = kind.score_label
    figures = (("Best score over evaluations", "progress", lambda: progress_figure(view, hover, winner, label)),
               ("Score distribution", "distribution", lambda: distribution_figure(view)),
               ("Pareto front", "pareto", lambda: pareto_figure(view, hover, winner)),
               ("Loss curves: top rules vs tuned AdamW", "curves", lambda: curves_figure(view, ranked[:3])))
    for title, name, make in figures:
        fig = make()
        if fig is not None:
            sections.append(f"<h2>{title}</h2>" + to_div(fig, name))
    lb = logbook_table(view)
    if lb:
        sections.append("<h2>Per-generation statistics (screening fidelity)</h2>" + lb)
    sections.append(_top(view, kind, ranked, top_n))
    sections.extend(transfer_sections(view))
    if winner is not None:
        lin = view.lineage(winner["id"])
        sections.append("<h2>Lineage of the best</h2>" + _table(
            [[f"#{x['id']}", html.escape(x["operator"]),
              _fmt(x["results"].get(view.fidelities[x["level"]]) if x.get("level", -1) >= 0 else None,
                   x.get("score", WORST_SCORE)),
              f"<pre>{html.escape(x['text'])}</pre>"] for x in lin], ["id", "operator", "score", "text"]))
    sections.extend(operator_sections(view))
    sections.extend(failure_sections(view))
    sections.extend(kind.report_sections(view))
    style = ("body{font-family:sans-serif;max-width:1150px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:13px}pre{margin:0}"
             ".failed{color:#b00}.ci{color:#555}.verdict{font-weight:bold}ul.defs{font-size:13px}")
    js = (f"<script type='text/javascript'>{plotly_js_source()}</script>" if plotly_js == "inline"
          else f"<script src='{PLOTLY_FILE}'></script>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>optforge: "
            f"{html.escape(str(view.campaign.get('name', '?')))}</title><style>{style}</style>{js}</head><body>"
            + "\n".join(sections) + "</body></html>")


def write_report(run: str | Path, out: str | Path | None = None, top_n: int = 5, plotly_js: str = "inline") -> Path:
    """Write the report (default ``<run>/report.html``); with ``plotly_js="file"`` also
    ``plotly.min.js`` next to it."""
    import matplotlib  # lazy: ~0.4 s of import, only where a kind draws with it (search.report.figures.png)
    matplotlib.use("Agg")
    view = RunView(run)
    try:
        path = Path(out) if out else view.run_dir / "report.html"
        path.write_text(build_html(view, top_n, plotly_js), encoding="utf-8")
        if plotly_js == "file":
            (path.parent / PLOTLY_FILE).write_text(plotly_js_source(), encoding="utf-8")
        return path
    finally:
        view.close()
