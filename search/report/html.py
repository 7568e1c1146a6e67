"""``optforge report RUN``: one self-contained HTML file (plots are base64 PNGs).

Sections: summary; best score over evaluations (per fidelity, running best and every
score); score distribution; Pareto front (score vs program size, colour = state tensors);
loss curves of the top rules vs tuned AdamW per task (from ``TaskResult.curve`` and
``extra['baseline_curve']``); the top candidates with their simplified source; the lineage
of the best; operator statistics. Every kind gets the generic sections and adds its own HTML
through ``KindPlugin.report_sections(view)``.
"""
from __future__ import annotations

import html
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from deap import tools

from evaluators.base import WORST_SCORE
from search.core import KindPlugin, RunView, run_kind

from .figures import ok_score, plot_curves, plot_distribution, plot_pareto, plot_progress
from .operators import operator_sections
from .transfer import transfer_sections


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


def simplified_text(kind: KindPlugin, c: dict) -> str:
    """What show and report print for a stored candidate: its empirically simplified text when the
    run simplified it, else the kind's exact simplification (the raw text if that fails)."""
    s = c["meta"].get("simplified")
    if s:
        return s["text"]
    try:
        return kind.simplify_exact(c["text"])
    except ValueError:  # e.g. a DSLError: show the raw text instead
        return c["text"]


def _table(rows: list[list[Any]], head: list[str]) -> str:
    h = "".join(f"<th>{html.escape(str(x))}</th>" for x in head)
    b = "".join("<tr>" + "".join(f"<td>{x}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{b}</table>"


def _fmt(s: float) -> str:
    return "failed" if not ok_score(s) else f"{s:+.4f}"


def build_html(view: RunView, top_n: int = 5) -> str:
    """The report page; the run's kind (``run_kind``) names the score and adds its own sections."""
    kind = run_kind(view)
    c = view.campaign
    ranked = view.ranked()
    used = sum(e["cost"] for e in view.evaluations)
    states = Counter(x["state"] for x in view.all)
    llm_calls = view.store.llm_calls()
    sections = [f"<h1>optforge run: {html.escape(str(c.get('name', '?')))}</h1>",
                _table([["kind", view.kind], ["status", view.status],
                        ["budget used", f"{used:g} / {c.get('budget', {}).get('evaluations')} units"],
                        ["evaluations (search / simplify)",
                         f"{sum(e['phase'] == 'search' for e in view.evaluations)} / "
                         f"{sum(e['phase'] == 'simplify' for e in view.evaluations)}"],
                        ["candidates (ok / invalid / duplicate / simplify)",
                         f"{states['ok']} / {states['invalid']} / {states['duplicate']} / {states['simplify']}"],
                        ["LLM calls", len(llm_calls)],
                        ["fidelities", ", ".join(view.fidelities)],
                        ["wall time", f"{view.store.get_meta('wall', 0.0):.0f} s"],
                        ["seed rules", ", ".join(c.get("seed_rules", []))]], ["", ""])]
    for title, fn in (("Best score over evaluations", lambda v: plot_progress(v, kind.score_label)),
                      ("Score distribution", plot_distribution), ("Pareto front", plot_pareto),
                      ("Loss curves: top rules vs tuned AdamW", plot_curves)):
        img = fn(view)
        if img:
            sections.append(f"<h2>{title}</h2>{img}")
    lb = logbook_table(view)
    if lb:
        sections.append("<h2>Per-generation statistics (screening fidelity)</h2>" + lb)
    rows = []
    for rank, x in enumerate(ranked[:top_n], 1):
        fid = view.fidelities[x["level"]]
        per = "<br>".join(f"{html.escape(t)}: {_fmt(tr.score)}" for t, tr in x["results"][fid].tasks.items())
        rows.append([rank, f"#{x['id']}", fid, _fmt(x["score"]), html.escape(x["operator"]), per,
                     f"<pre>{html.escape(simplified_text(kind, x))}</pre>"])
    sections.append("<h2>Top candidates</h2>" + _table(rows, ["rank", "id", "fidelity", "score", "operator",
                                                               "per task", "simplified"]))
    sections.extend(transfer_sections(view))
    if ranked:
        lin = view.lineage(ranked[0]["id"])
        sections.append("<h2>Lineage of the best</h2>" + _table(
            [[f"#{x['id']}", html.escape(x["operator"]), _fmt(x.get("score", WORST_SCORE)),
              f"<pre>{html.escape(x['text'])}</pre>"] for x in lin], ["id", "operator", "score", "text"]))
    ops: dict[str, Counter] = {}
    for x in view.all:
        ops.setdefault(x["operator"], Counter())[x["state"]] += 1
    best_by_op: dict[str, float] = {}
    for x in view.individuals:
        best_by_op[x["operator"]] = max(best_by_op.get(x["operator"], WORST_SCORE), x["score"])
    sections.append("<h2>Operators</h2>" + _table(
        [[html.escape(o), n["ok"], n["invalid"], n["duplicate"], _fmt(best_by_op.get(o, WORST_SCORE))]
         for o, n in sorted(ops.items())], ["operator", "evaluated", "invalid", "duplicate", "best score"]))
    sections.extend(operator_sections(view))
    sections.extend(kind.report_sections(view))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:13px}pre{margin:0}")
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>" \
           + "\n".join(sections) + "</body></html>"


def write_report(run: str | Path, out: str | Path | None = None, top_n: int = 5) -> Path:
    import matplotlib  # lazy: ~0.4 s of import, only where a figure is drawn (see search.report.figures)
    matplotlib.use("Agg")
    view = RunView(run)
    try:
        path = Path(out) if out else view.run_dir / "report.html"
        path.write_text(build_html(view, top_n), encoding="utf-8")
        return path
    finally:
        view.close()
