"""The report's interactive figures (plotly), each a ``go.Figure`` or None when there is nothing to draw.

The page embeds plotly.js itself (``plotly_js``), so a report opens without a network. Every point
of a candidate carries a hover label (``Hover``): its id, operator, generation, scores per fidelity
and per task, and its simplified source, or the reason it failed. The chosen winner (the first of
the run's final ranking, the candidate ``optforge export`` writes) is marked with a star.

``png`` stays for kinds that draw their own matplotlib figures (``KindPlugin.report_sections``).
"""
from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from evaluators.base import WORST_SCORE, EvalResult
from search.core import KindPlugin, RunView
from search.core.strategies import pareto_front

#: Marker of the chosen winner in every figure (and the trace name the tests look for).
WINNER = "chosen winner"
_TEXT = "%{text}<extra></extra>"   # hover: the point's label, no trace-name box
_WINNER_MARKER = {"symbol": "star", "size": 18, "color": "#d62728", "line": {"color": "black", "width": 1}}


def png(fig) -> str:
    """A matplotlib figure as an inline ``<img>`` (base64 PNG); closes the figure."""
    import matplotlib.pyplot as plt  # lazy: ~0.4 s of import, only where a kind draws with it
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def ok_score(score: float) -> bool:
    """A score worth plotting: finite and above the failure marker."""
    return score > WORST_SCORE and math.isfinite(score)


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


def plotly_js() -> str:
    """plotly.js (minified, ~4.6 MB) from the installed plotly package: the page needs no network."""
    return get_plotlyjs()


def to_div(fig: go.Figure, name: str) -> str:
    """A figure as an HTML ``<div id="plot-<name>">`` plus the script that draws it (plotly.js must
    already be on the page)."""
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=f"plot-{name}",
                       config={"displaylogo": False, "responsive": True})


def failure_text(r: Any) -> str:
    """Why an evaluation (``EvalResult``) failed: its status and reason, or its first failed task's."""
    reason = r.reason or next((f"{t}: {tr.reason}" for t, tr in r.tasks.items() if tr.reason), "")
    status = str(r.status.value)
    if not reason:
        return status
    return reason if reason.startswith(status) else f"{status}: {reason}"


def hover_code(text: str, max_lines: int = 30) -> str:
    """Source text as a hover label: HTML-escaped, lines joined by ``<br>``, indentation kept
    (no-break spaces: SVG text collapses ordinary ones)."""
    lines = text.rstrip("\n").split("\n")
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines)"]
    out = []
    for ln in lines:
        stripped = ln.lstrip(" ")
        out.append("\u00a0" * (len(ln) - len(stripped)) + html.escape(stripped, quote=False))
    return "<br>".join(out)


class Hover:
    """Hover labels of a run's candidates, built once per candidate (simplifying is not free)."""

    def __init__(self, view: RunView, kind: KindPlugin):
        self.view, self.kind = view, kind
        self._cache: dict[int, str] = {}

    def source(self, c: dict) -> str:
        return simplified_text(self.kind, c)

    def __call__(self, cid: int) -> str:
        if cid not in self._cache:
            c = self.view.by_id.get(cid)
            self._cache[cid] = f"#{cid} (not in the store)" if c is None else self._label(c)
        return self._cache[cid]

    def _label(self, c: dict) -> str:
        head = f"<b>#{c['id']}</b> {html.escape(c['operator'])}, generation {c['generation']}"
        scores, per = [], ""
        for f, r in c.get("results", {}).items():
            scores.append(f"{html.escape(f)} {r.score:+.4f}" if r.ok and ok_score(r.score)
                          else f"{html.escape(f)} {html.escape(failure_text(r))}")
            per = ", ".join(f"{html.escape(t)} {tr.score:+.3f}" if tr.status.value == "ok"
                            else f"{html.escape(t)} {tr.status.value}" for t, tr in r.tasks.items())
        lines = [head, "score: " + ("; ".join(scores) or "not evaluated")]
        if per:
            lines.append("per task (highest fidelity): " + per)
        return "<br>".join(lines) + "<br><br>" + hover_code(self.source(c))


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=height, hovermode="closest",
                      margin={"l": 60, "r": 20, "t": 50, "b": 50}, legend_font_size=11,
                      hoverlabel={"align": "left", "font": {"family": "monospace", "size": 11}})
    return fig


def progress_figure(view: RunView, hover: Hover, winner: dict | None, score_label: str = "score") -> go.Figure | None:
    """Every search evaluation's score (x: its order), the running best per fidelity, failed
    evaluations on a strip below the lowest score, and the chosen winner."""
    evs = [e for e in view.evaluations if e["phase"] == "search"]
    if not evs:
        return None
    oks = [e["score"] for e in evs if ok_score(e["score"])]
    lo, hi = (min(oks), max(oks)) if oks else (0.0, 0.0)
    floor = lo - 0.15 * max(hi - lo, 1e-3)   # the strip of failed evaluations
    fig = go.Figure()
    results = _results_by_seq(view)
    for f in view.fidelities:
        pts = [(k + 1, e) for k, e in enumerate(evs) if e["fidelity"] == f]
        good = [(x, e) for x, e in pts if ok_score(e["score"])]
        bad = [(x, e) for x, e in pts if not ok_score(e["score"])]
        if good:
            xs = [x for x, _ in good]
            fig.add_trace(go.Scatter(x=xs, y=[e["score"] for _, e in good], mode="markers", name=f"scores at {f}",
                                     marker={"size": 6, "opacity": 0.55},
                                     text=[hover(e["candidate_id"]) for _, e in good], hovertemplate=_TEXT))
            best, run = [], -math.inf
            for _, e in good:
                run = max(run, e["score"])
                best.append(run)
            fig.add_trace(go.Scatter(x=xs, y=best, mode="lines", line_shape="hv", name=f"best at {f}",
                                     hoverinfo="skip"))
        if bad:
            text = [f"<b>#{e['candidate_id']}</b> failed at {html.escape(f)}: "
                    f"{html.escape(failure_text(results[e['seq']]))}" for _, e in bad]
            fig.add_trace(go.Scatter(x=[x for x, _ in bad], y=[floor] * len(bad), mode="markers",
                                     name=f"failed at {f} ({len(bad)})", marker={"symbol": "x", "size": 7},
                                     text=text, hovertemplate=_TEXT))
    if winner is not None and winner["level"] >= 0:
        fid = view.fidelities[winner["level"]]
        at = [(k + 1, e) for k, e in enumerate(evs) if e["key"] == winner["key"] and e["fidelity"] == fid]
        if at:
            x, e = at[0]
            fig.add_trace(go.Scatter(x=[x], y=[e["score"] if ok_score(e["score"]) else floor], mode="markers",
                                     name=f"{WINNER} #{winner['id']}", marker=_WINNER_MARKER,
                                     text=[f"<b>{WINNER}</b><br>" + hover(winner["id"])], hovertemplate=_TEXT))
    fig.add_hline(y=0, line={"color": "grey", "width": 1, "dash": "dot"})
    return _layout(fig, "score of every search evaluation (0 = the baseline)", "evaluation #", score_label)


def _results_by_seq(view: RunView) -> dict[int, EvalResult]:
    """The failed evaluations' results by ``seq`` (for their reasons)."""
    return {e["seq"]: EvalResult.model_validate_json(e["result"]) for e in view.evaluations
            if not ok_score(e["score"])}


def distribution_figure(view: RunView) -> go.Figure | None:
    """Histogram of the search scores per fidelity (failed evaluations counted in the title)."""
    fig = go.Figure()
    for f in view.fidelities:
        ys = [e["score"] for e in view.evaluations if e["fidelity"] == f and e["phase"] == "search"
              and ok_score(e["score"])]
        if ys:
            fig.add_trace(go.Histogram(x=ys, name=f"{f} ({len(ys)})", opacity=0.6, nbinsx=30))
    if not fig.data:
        return None
    n_fail = sum(1 for e in view.evaluations if e["phase"] == "search" and not ok_score(e["score"]))
    fig.update_layout(barmode="overlay")
    return _layout(fig, f"score distribution (failed evaluations, not shown: {n_fail})", "score", "count", 340)


def pareto_figure(view: RunView, hover: Hover, winner: dict | None) -> go.Figure | None:
    """Score at the highest fidelity reached vs program size (colour: state tensors; rules that
    stopped at a lower fidelity are faint). The Pareto front over (score up, size down, states
    down) is ringed, among the rules at the top fidelity: scores of different fidelities differ."""
    inds = [c for c in view.individuals if ok_score(c["score"]) and "size" in c["meta"]]
    if not inds:
        return None
    top = max(c["level"] for c in inds)
    fig = go.Figure()
    for level in sorted({c["level"] for c in inds}, reverse=True):
        group = [c for c in inds if c["level"] == level]
        fig.add_trace(go.Scatter(
            x=[float(c["meta"]["size"]) for c in group], y=[c["score"] for c in group], mode="markers",
            name=f"rules at {view.fidelities[level]} ({len(group)})", text=[hover(c["id"]) for c in group],
            hovertemplate=_TEXT,
            marker={"size": 9 if level == top else 7, "opacity": 0.75 if level == top else 0.3,
                    "symbol": "circle" if level == top else "diamond", "coloraxis": "coloraxis",
                    "color": [float(c["meta"].get("n_state", 0)) for c in group]}))
    best = [c for c in inds if c["level"] == top]
    pts = [(c["score"], float(c["meta"]["size"]), float(c["meta"].get("n_state", 0))) for c in best]
    front = sorted(pareto_front(pts, (1.0, -1.0, -1.0)), key=lambda k: pts[k][1])
    fig.add_trace(go.Scatter(x=[pts[k][1] for k in front], y=[pts[k][0] for k in front], mode="markers+lines",
                             name=f"Pareto front at {view.fidelities[top]} (score, size, states)",
                             line={"color": "red", "width": 1, "dash": "dot"},
                             marker={"size": 15, "color": "rgba(0,0,0,0)", "line": {"color": "red", "width": 2}},
                             text=[hover(best[k]["id"]) for k in front], hovertemplate=_TEXT))
    if winner is not None and ok_score(winner["score"]) and "size" in winner["meta"]:
        fig.add_trace(go.Scatter(x=[float(winner["meta"]["size"])], y=[winner["score"]], mode="markers",
                                 name=f"{WINNER} #{winner['id']}", marker=_WINNER_MARKER,
                                 text=[f"<b>{WINNER}</b><br>" + hover(winner["id"])], hovertemplate=_TEXT))
    fig.update_layout(legend={"orientation": "h", "y": -0.2},
                      coloraxis={"colorscale": "Viridis", "colorbar": {"title": {"text": "state tensors"}}})
    return _layout(fig, f"score vs size ({len(inds)} rules; top fidelity {view.fidelities[top]})",
                   "program size (expression nodes)", "score at highest fidelity reached")


def _curve_hover(who: str, task: str) -> str:
    return f"{html.escape(who)} {html.escape(task)}<br>step %{{x}}: %{{y:.4g}}<extra></extra>"


def curves_figure(view: RunView, top: list[dict]) -> go.Figure | None:
    """Loss (the task's metric) over training steps of the ``top`` candidates and tuned AdamW, one
    panel per task of the first candidate's highest fidelity; log y where the values span > 50x."""
    top = [c for c in top if ok_score(c["score"])]
    if not top:
        return None
    fid = view.fidelities[top[0]["level"]]
    tasks = list(top[0]["results"][fid].tasks)
    if not tasks:
        return None
    cols = min(len(tasks), 2)
    rows = math.ceil(len(tasks) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"{t} ({fid})" for t in tasks])
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
    for i, t in enumerate(tasks):
        row, col = i // cols + 1, i % cols + 1
        vals: list[float] = []
        base_done = False
        for j, c in enumerate(top):
            r = c["results"].get(fid)
            tr = r.tasks.get(t) if r else None
            if tr is None or not tr.curve:
                continue
            steps = (tr.extra.get("curve_steps") or list(range(len(tr.curve))))[: len(tr.curve)]
            lr = f", lr {tr.best_lr:.2g}" if tr.best_lr else ""
            fig.add_trace(go.Scatter(x=steps, y=tr.curve, mode="lines", name=f"#{c['id']} ({tr.score:+.3f}{lr})",
                                     legendgroup=f"c{c['id']}", showlegend=i == 0, line={"color": palette[j % 6]},
                                     hovertemplate=_curve_hover(f"#{c['id']}", t)), row=row, col=col)
            vals += [v for v in tr.curve if v == v and v > 0]
            base = tr.extra.get("baseline_curve")
            if not base_done and base:
                bs = (tr.extra.get("baseline_curve_steps") or list(range(len(base))))[: len(base)]
                blr = tr.extra.get("baseline_lr")
                fig.add_trace(go.Scatter(x=bs, y=base, mode="lines",
                                         name="tuned AdamW" + (f" (lr {blr:.2g})" if blr else ""),
                                         legendgroup="adamw", showlegend=i == 0,
                                         line={"color": "black", "dash": "dash"},
                                         hovertemplate=_curve_hover("tuned AdamW", t)), row=row, col=col)
                vals += [v for v in base if v == v and v > 0]
                base_done = True
        if vals and max(vals) / max(min(vals), 1e-30) > 50:
            fig.update_yaxes(type="log", row=row, col=col)
        fig.update_yaxes(title_text=top[0]["results"][fid].tasks[t].metric_name, row=row, col=col)
        fig.update_xaxes(title_text="step", row=row, col=col)
    if not fig.data:
        return None
    fig.update_layout(height=330 * rows + 80, margin={"l": 60, "r": 20, "t": 60, "b": 40}, hovermode="closest")
    return fig
